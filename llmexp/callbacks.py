"""Lightning plugins, loggers and callbacks that llmexp adds: atomic checkpoints, metrics.csv,
the loss-curve plot."""
from __future__ import annotations

import csv
import io
import math
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any, Optional

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_only

from llmexp.io import atomic_path, atomic_write_bytes
from llmexp.metrics_csv import read_metrics  # noqa: F401  (re-exported: its users import it from here)
from llmexp.outcomes import Preempted


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save streams into a temporary file beside the target, which is fsynced and renamed:
    a kill mid-save leaves the previous checkpoint, and no in-memory copy of the state is made."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        if Path(path).is_dir() and not Path(path).is_symlink():  # a sharded (fsdp/tp) folder: the run changed layout
            shutil.rmtree(path)
        with atomic_path(Path(path)) as tmp:
            torch.save(checkpoint, tmp)

    def load_checkpoint(self, path, map_location: Optional[Any] = "cpu", weights_only: Optional[bool] = None) -> dict:
        # Tensors and plain containers only, never arbitrary pickled objects.
        return super().load_checkpoint(path, map_location=map_location, weights_only=True)


class RunCSVLogger(Logger):
    """<run_dir>/metrics.csv: one row per logging call, written as it is logged, continued across
    resumes. Lightning's CSVLogger deletes an existing file and buffers rows; this one is built
    on the public Logger base so a resumed run keeps the rows before its checkpoint and
    replaces the rest: the first row a process logs drops every earlier row from that step on
    (the steps a killed run logged after its checkpoint are logged again)."""

    def __init__(self, run_dir: Path):
        super().__init__()
        self.path = Path(run_dir) / "metrics.csv"
        self._rows: Optional[list[dict[str, Any]]] = None  # None until this process logs
        self._columns: list[str] = []

    @property
    def name(self) -> str:
        return "csv"

    @property
    def version(self) -> str:
        return ""

    @property
    def save_dir(self) -> str:
        return str(self.path.parent)

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """The run folder's config.yaml holds them."""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: Optional[int] = None) -> None:
        row = {"step": step, **{k: float(v) for k, v in metrics.items()}}
        if self._rows is None:  # a fresh run, or a resume: cut what follows the checkpoint
            logged = set(metrics) - {"epoch"}  # Lightning adds the epoch to every row
            self._rows = [r for r in _read_rows(self.path)
                          if int(float(r["step"])) < step or (int(float(r["step"])) == step and not set(r) & logged)]
            self._columns = sorted({k for r in self._rows for k in r} - {"step"})
            self._rewrite()
        self._rows.append(row)
        if set(metrics) - set(self._columns):
            self._columns = sorted(set(self._columns) | set(metrics))
            self._rewrite()
        else:
            with self.path.open("a", newline="") as f:
                self._writer(f).writerow(row)

    def logged(self, step: int, key: str) -> bool:
        """Whether metrics.csv (as on disk, or as this process rewrote it) has `key` at `step`."""
        return any(int(r["step"]) == step and key in r for r in self.rows())

    def rows(self) -> list[dict[str, float]]:
        """metrics.csv's rows in order (as on disk, or as this process rewrote it), as numbers."""
        rows = self._rows if self._rows is not None else _read_rows(self.path)
        return [{k: float(v) for k, v in r.items()} for r in rows]

    def _writer(self, f) -> csv.DictWriter:
        return csv.DictWriter(f, fieldnames=[*self._columns[:self._step_at()], "step", *self._columns[self._step_at():]])

    def _step_at(self) -> int:  # "step" sits in sorted order among the metric columns, as Lightning writes it
        return sum(1 for c in self._columns if c < "step")

    def _rewrite(self) -> None:
        with atomic_path(self.path) as tmp, tmp.open("w", newline="") as f:
            writer = self._writer(f)
            writer.writeheader()
            writer.writerows(self._rows or [])


class StepCheckpoint(ModelCheckpoint):
    """ModelCheckpoint that saves only where an optimizer step ends. Lightning decides by
    global_step alone and, in a resumed process, does not know that the checkpoint's own step was
    saved already: with gradient accumulation the first micro-batch after resuming at step N
    (N a multiple of the interval) saved step-N again, one micro-batch into the next step, and
    linked last.ckpt to it. A run killed before the next interval then resumed from that
    checkpoint with its loop one micro-batch ahead: its first step accumulated half a batch and
    the metrics differed from the uninterrupted run (issue 12; Lightning issue #17903)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if (batch_idx + 1) % trainer.accumulate_grad_batches:
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


class ResumedValidation(L.Callback):
    """Lightning treats the validation of the step a checkpoint was taken at as done when it
    resumes from that checkpoint (it fast-forwards the validation loop). A run killed between
    that checkpoint and the end of its validation never logged it, so run it here, before the
    first step, when metrics.csv lacks it: with the restored weights, under the same step label
    (the loop's logging step is not advanced yet at on_train_start)."""

    def __init__(self, metrics: RunCSVLogger, val_every: int):
        self.metrics, self.val_every = metrics, val_every

    def on_train_start(self, trainer, pl_module) -> None:
        step = trainer.global_step
        if step == 0 or step % self.val_every or self.metrics.logged(step - 1, "val/loss"):
            return
        # Lightning's own call for an in-training validation (training_epoch_loop.py); no public
        # API runs the fit's validation loop from a callback.
        trainer.fit_loop.epoch_loop.val_loop.run()
        trainer.training = True


def _read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return [{k: v for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


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


class Preemption(L.Callback):
    """SIGTERM (a scheduler's time limit, `kill`), SIGUSR1 (SLURM's `--signal=SIGUSR1@90`
    warning) and SIGUSR2 (submitit's preemption and timeout warning, Hydra's submitit launcher)
    save last.ckpt at the next optimizer-step boundary, as an interval checkpoint would, and
    stop the run with `Preempted` when the next batch starts (once that step's metrics are
    logged); under SLURM, SIGUSR1 also requeues the job (`scontrol requeue`), whose rerun
    resumes from that checkpoint (a multirun job hands SIGUSR2 to submitit, which requeues it:
    llmexp/multirun.py). Lightning's own handlers save from inside the signal handler
    (mid-step, possibly mid-accumulation: not exactly resumable) or stop without saving; these
    only set a flag, and every rank agrees on the step to stop at."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)

    def __init__(self, last_checkpoint: Path):
        self.last_checkpoint = last_checkpoint
        self.received: Optional[int] = None
        self.stopped: Optional[Preempted] = None

    def on_train_start(self, trainer, pl_module) -> None:
        # After Lightning registered its handlers (it restores the earlier ones when fit ends).
        for sig in self.SIGNALS:
            signal.signal(sig, self._notice)

    def _notice(self, signum, frame) -> None:
        self.received = signum

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if (batch_idx + 1) % trainer.accumulate_grad_batches or self.stopped is not None:
            return
        if not trainer.strategy.reduce_boolean_decision(self.received is not None, all=False):
            return
        save_last_checkpoint(trainer, self.last_checkpoint)
        name = signal.Signals(self.received).name if self.received is not None else "another rank's signal"
        if self.received == signal.SIGUSR1 and trainer.is_global_zero:
            requeue_slurm_job()
        self.stopped = Preempted(name, trainer.global_step, self.last_checkpoint)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.stopped is not None:
            raise self.stopped


def save_last_checkpoint(trainer: L.Trainer, path: Path) -> None:
    """Save to last.ckpt, which may be ModelCheckpoint's link to a step-N checkpoint: the link is
    removed first, so a sharded (fsdp/tp) save never writes its shards into that step's folder."""
    if trainer.is_global_zero and path.is_symlink():
        path.unlink()
    trainer.strategy.barrier("llmexp_last_checkpoint")
    trainer.save_checkpoint(path)


def requeue_slurm_job() -> None:
    """Put this SLURM job back in the queue (sbatch --requeue semantics); nothing outside SLURM."""
    job = os.environ.get("SLURM_JOB_ID")
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    if job and shutil.which("scontrol"):
        subprocess.run(["scontrol", "requeue", job], check=False)
