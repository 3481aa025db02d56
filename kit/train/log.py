"""Per-epoch training records: metrics.csv, TensorBoard scalars (if installed) and curves.png, rewritten
atomically from the full history each epoch."""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from kit.atomic import atomic_path, write_csv

log = logging.getLogger("kit.train.loop")


class TrainLog:
    """Collects one dict per epoch and writes them to `run_dir` (only where `enabled`, i.e. rank 0)."""

    def __init__(self, run_dir: str | Path, history: list[dict] | None = None, enabled: bool = True,
                 tensorboard: bool = True):
        self.run_dir, self.rows, self.enabled = Path(run_dir), list(history or []), enabled
        self.writer = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=len(self.rows) + 1)
            except ImportError:  # tensorboard is optional
                log.info("tensorboard not installed: no tb/ logs")

    def add(self, row: dict) -> None:
        self.rows.append(dict(row))
        if not self.enabled:
            return
        write_csv(pd.DataFrame(self.rows), self.run_dir / "metrics.csv")
        if self.writer is not None:
            for key, value in row.items():
                if key != "epoch" and isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, row["epoch"])
            self.writer.flush()
        plot_curves(self.rows, self.run_dir / "curves.png")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def plot_curves(rows: list[dict], path: str | Path) -> Path:
    """Loss (train/val) and val accuracy/GAP against epoch, as a PNG written atomically."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = pd.DataFrame(rows)
    fig, (ax_loss, ax_score) = plt.subplots(1, 2, figsize=(10, 4))
    for col in ("train_loss", "val_loss"):
        if col in df:
            ax_loss.plot(df["epoch"], df[col], marker="o", label=col)
    for col in ("val_acc", "val_gap"):
        if col in df:
            ax_score.plot(df["epoch"], df[col], marker="o", label=col)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_score.set(xlabel="epoch", ylabel="score", title="validation", ylim=(0, 1))
    for ax in (ax_loss, ax_score):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
    return Path(path)
