"""Per-epoch training records: metrics.csv, TensorBoard (if installed), curves.png; rewritten atomically each epoch."""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

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
        with atomic_path(self.run_dir / "curves.png") as tmp:
            curves_figure(pd.DataFrame(self.rows)).savefig(tmp, format="png", dpi=80)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def curves_figure(df: pd.DataFrame, run: str = "") -> Figure:
    """Losses and accuracy/GAP columns of a metrics table against epoch (curves.png, `kit report`)."""
    x = df["epoch"] if "epoch" in df else pd.Series(range(len(df)))
    losses = [c for c in df.columns if c.endswith("loss")]
    scores = [c for c in df.columns if c.endswith(("acc", "gap")) and c != "epoch"]
    fig = Figure(figsize=(9, 3), layout="tight")
    for ax, cols, title in zip(fig.subplots(1, 2), (losses, scores), ("loss", "accuracy / GAP")):
        for c in cols:
            ax.plot(x, df[c], marker="o", ms=3, label=c)
        ax.set(title=f"{run}: {title}" if run else title, xlabel="epoch")
        ax.grid(alpha=0.3)
        if cols:
            ax.legend(fontsize=8)
    return fig
