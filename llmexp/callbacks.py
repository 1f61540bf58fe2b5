"""Lightning plugins and callbacks that llmexp adds: atomic checkpoints, the loss-curve plot."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Optional

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

from llmexp.io import atomic_write_bytes
from llmexp.metrics_csv import read_metrics  # noqa: F401  (re-exported: its users import it from here)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Serialise in memory, then write-fsync-rename: a kill mid-save leaves the previous file."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        if Path(path).is_dir():  # a sharded (fsdp/tp) checkpoint folder: the run changed layout
            import shutil

            shutil.rmtree(path)
        atomic_write_bytes(Path(path), buffer.getvalue())


class _AppendingWriter(ExperimentWriter):
    """Lightning's writer deletes an existing metrics.csv when it starts; a resumed run must
    keep the rows before its checkpoint, so this one appends under the existing header."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = sorted(set(next(csv.reader(f), [])) - {""})


class RunCSVLogger(CSVLogger):
    """<run_dir>/metrics.csv, continued across resumes (rows a resumed run logs again for the
    same step come later in the file; `read_metrics` keeps the last)."""

    def __init__(self, run_dir: Path):
        super().__init__(save_dir=str(run_dir), name="", version="")

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


def plot_losses(metrics_csv: Path, out_png: Path, baseline: Optional[float] = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = read_metrics(metrics_csv)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for key, style in (("train/loss", "-"), ("val/loss", "o-")):
        if metrics.get(key):
            steps, values = zip(*metrics[key])
            ax.plot(steps, values, style, label=key, markersize=3, linewidth=1.2)
    if baseline is not None and math.isfinite(baseline):
        ax.axhline(baseline, color="grey", linestyle="--", linewidth=1, label="unigram entropy (val)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic_write_bytes(out_png, buffer.getvalue())


class LossPlot(L.Callback):
    """Redraws <run_dir>/loss.png after every validation and at the end of training."""

    def __init__(self, metrics_csv: Path, out_png: Path, baseline: Optional[float]):
        self.metrics_csv, self.out_png, self.baseline = metrics_csv, out_png, baseline

    def _draw(self, trainer: L.Trainer) -> None:
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.save()
            plot_losses(self.metrics_csv, self.out_png, self.baseline)

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._draw(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self._draw(trainer)
