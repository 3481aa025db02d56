"""`delf.pt`, written atomically by `kit train-delf`: backbone name + state_dict (self-contained), stride,
hidden channels, head state_dict, label_map, the descriptor PCA (or None), the loader's mean/std, image_size,
the training config and history. Everything is a tensor or a plain container: it loads weights-only."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kit.errors import KitError
from kit.models.safe_load import load_torch_file

REQUIRED = ("backbone_name", "backbone", "head", "stride", "label_map")


@dataclass
class DelfPCA:
    """Descriptor PCA as plain arrays: transform(x) = (x @ components.T - mean @ components.T) / scale, in
    float64 as scikit-learn's PCA.transform computes it (scale: the whitening divisor, or ones)."""

    mean: np.ndarray        # [d]
    components: np.ndarray  # [k, d]
    scale: np.ndarray       # [k]

    @staticmethod
    def fit(x: np.ndarray, dim: int, whiten: bool = True, seed: int = 0) -> "DelfPCA":
        """The first min(dim, d, n) principal axes of the rows of `x` (scikit-learn's PCA)."""
        from sklearn.decomposition import PCA

        pca = PCA(n_components=min(dim, x.shape[1], len(x)), whiten=whiten, random_state=seed).fit(x)
        return DelfPCA.from_variance(pca.mean_, pca.components_, pca.explained_variance_, whiten)

    @staticmethod
    def from_variance(mean, components, variance, whiten: bool) -> "DelfPCA":
        scale = np.sqrt(np.asarray(variance, np.float64)) if whiten else np.ones(len(components))
        scale[scale < np.finfo(np.float64).eps] = np.finfo(np.float64).eps  # rank-deficient axes, as sklearn
        return DelfPCA(np.asarray(mean, np.float64), np.asarray(components, np.float64), scale)

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (x @ self.components.T - self.mean.reshape(1, -1) @ self.components.T) / self.scale

    def to_state(self) -> dict:
        return {k: torch.from_numpy(np.asarray(v, np.float64)) for k, v in vars(self).items()}

    @staticmethod
    def from_state(state, path=None) -> "DelfPCA | None":
        """The PCA of `to_state` (None stays None); also reads the earlier form with the explained variance."""
        if state is None:
            return None
        old = ("components", "mean", "explained_variance")
        keys = ("mean", "components", "scale") if isinstance(state, dict) and "scale" in state else old
        if not isinstance(state, dict) or not all(torch.is_tensor(state.get(k)) for k in keys):
            raise KitError(f"{path}: DELF file: 'pca' is not kit's tensor form (retrain with `kit train-delf`)")
        arrays = [state[k].double().numpy() for k in keys]
        if keys == old:
            return DelfPCA.from_variance(arrays[1], arrays[0], arrays[2], bool(state.get("whiten", False)))
        return DelfPCA(*arrays)


def load_delf(path: str | Path) -> dict:
    """The state of a `delf.pt` (KitError when it is missing, unsafe or lacks a key)."""
    path = Path(path)
    if not path.is_file():
        raise KitError(f"{path}: DELF file not found (run `kit train-delf` first)")
    state = load_torch_file(path, "DELF file")
    if not isinstance(state, dict):
        raise KitError(f"{path}: not a DELF file (a {type(state).__name__}, not a dict)")
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise KitError(f"{path}: not a DELF file (missing {', '.join(missing)})")
    return state
