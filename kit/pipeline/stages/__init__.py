"""The stage functions, one module per family; importing this package registers them in STAGES."""
from kit.pipeline.stages import combine, data, filtering, models, retrieval  # noqa: F401
