"""Lower pass: validated Config + Plan + prepared data -> LightningModule, DataModule, Trainer."""
from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm

from llmexp.callbacks import AtomicCheckpointIO, LossPlot, Preemption, ResumedValidation, StepCheckpoint
from llmexp.config.schema import Config
from llmexp.parallel.strategy import lightning_strategy, resolve_accelerator
from llmexp.plan import Plan
from llmexp.rundir import STEP_CHECKPOINT
from llmexp.stages import STAGES
from llmexp.tracking import build_loggers


def build(
    cfg: Config, plan: Plan, data: Any, run_dir: Path, checkpoint_meta: dict[str, Any],
    flat_config: dict[str, Any], extra_callbacks: Sequence[L.Callback] = (),
) -> tuple[L.LightningModule, L.LightningDataModule, L.Trainer]:
    """`data` is what the stage's `prepare` returned; `extra_callbacks` join the Trainer's own."""
    t = cfg.trainer
    accelerator = resolve_accelerator(t.accelerator)
    stage = STAGES[cfg.stage.name]
    module = stage.module(cfg, plan, flat_config, checkpoint_meta)
    datamodule = stage.datamodule(cfg, plan, data)
    checkpoints = run_dir / "checkpoints"
    callbacks = [
        # step-N.ckpt every checkpoint_every steps, the newest keep_checkpoints kept, last.ckpt a
        # link to the newest: what a rerun or resume= continues from (an older one if it is corrupt).
        StepCheckpoint(dirpath=checkpoints, filename=STEP_CHECKPOINT, auto_insert_metric_name=False,
                       every_n_train_steps=t.checkpoint_every, monitor="step", mode="max",
                       save_top_k=t.keep_checkpoints, save_last="link", enable_version_counter=False,
                       save_on_train_epoch_end=False),
        # best.ckpt whenever validation improves.
        ModelCheckpoint(dirpath=checkpoints, filename="best", monitor="val/loss", mode="min",
                        save_top_k=1, enable_version_counter=False, save_on_train_epoch_end=False),
        LossPlot(run_dir / "metrics.csv", run_dir / "loss.png", getattr(data, "val_unigram_entropy", None)),
        TrainingBar(),
        Preemption(checkpoints / "last.ckpt"),
    ]
    loggers = build_loggers(cfg, run_dir, flat_config)
    callbacks.append(ResumedValidation(loggers[0], t.val_every))
    callbacks.extend(extra_callbacks)
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=lightning_strategy(cfg, accelerator),
        precision=cfg.parallelism.precision,
        max_steps=plan.steps,
        max_epochs=-1,
        accumulate_grad_batches=plan.loader_batches_per_step,  # a pipeline's schedule accumulates itself
        # applied in StageModule.configure_gradient_clipping (by pipeline_step under a pipeline)
        gradient_clip_val=None if plan.pipeline else cfg.optimizer.grad_clip,
        val_check_interval=t.val_every * plan.loader_batches_per_step,
        check_val_every_n_epoch=None,
        limit_val_batches=t.val_batches,
        num_sanity_val_steps=0,
        log_every_n_steps=t.log_every,
        logger=loggers,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        default_root_dir=str(run_dir),
        use_distributed_sampler=False,  # ResumableSampler shards by rank itself
        enable_model_summary=False,  # the plan says it better
    )
    return module, datamodule, trainer


def quiet_lightning_warnings() -> None:
    """A quiet console (the plan, the data report, one progress bar, validation lines, the
    summary): warnings and notices that do not apply to llmexp's setup are filtered where they
    are emitted. llmexp resumes mid-epoch exactly, its streams are one long epoch by design, its
    plan names the device and precision, and its summary says why training stopped."""
    for pattern in (
        r".*resuming from a checkpoint that ended before the epoch ended.*",
        r".*does not have many workers.*",
        r".*Experiment logs directory .* exists and is not empty.*",
        r".*Checkpoint directory .* exists and is not empty.*",
        r".*The number of training batches .* is smaller than the logging interval.*",
        r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",  # Lightning's _pytree on torch >= 2.9
        # pipeline_step saves after the optimizer step, as automatic optimization does
        r".*Using ModelCheckpoint with manual optimization.*",
    ):
        warnings.filterwarnings("ignore", message=pattern)
    warnings.formatwarning = _one_line_warning
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.trainer.connectors.checkpoint_connector"):
        source = logging.getLogger(name)
        if not any(isinstance(f, _LightningNotices) for f in source.filters):
            source.addFilter(_LightningNotices())


class TrainingBar(TQDMProgressBar):
    """One progress bar, the training one, counting optimizer steps of the whole run: its total
    is max_steps and a resumed run's bar starts at the step it resumed from, as tqdm's `initial`,
    so the rate and ETA come from the steps this process ran and the steps still to run.
    Lightning's bar counts the batches of an epoch, which a resume neither starts at zero nor
    ends at max_steps. Validation prints its own line (`step N: validation loss`), so its bars
    would only repeat that line on the console."""

    def init_validation_tqdm(self):
        return Tqdm(disable=True)

    def init_train_tqdm(self) -> Tqdm:
        # Made at on_train_start, after a resume restored the step; Lightning's settings otherwise.
        return Tqdm(desc="steps", total=self.trainer.max_steps, initial=self.trainer.global_step,
                    position=2 * self.process_position, disable=self.is_disabled, leave=True, dynamic_ncols=True,
                    file=sys.stdout, smoothing=0, bar_format=self.BAR_FORMAT)

    def on_train_epoch_start(self, trainer, *_: Any) -> None:
        """One bar for the run (Lightning's restarts at each epoch and is skipped on a resume)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        bar = self.train_progress_bar
        if (batch_idx + 1) % trainer.accumulate_grad_batches or bar.disable:  # mid-accumulation
            return
        bar.n = trainer.global_step
        bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
        bar.refresh()


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """A warning as one line, without Python's echo of the source line that raised it."""
    return f"{category.__name__}: {message} ({os.path.basename(filename)}:{lineno})\n"


class _LightningNotices(logging.Filter):
    """Lightning's start-up notices: hardware availability (the plan names the device), the AMP
    choice (the plan names the precision), the LitLogger advert, why fit stopped, and the note that
    a checkpoint save includes the full training state (`weights_only` of *saving*: llmexp loads
    with weights_only=True, llmexp/checkpoints.py)."""

    NOTICES = ("GPU available:", "TPU available:", "HPU available:", "IPU available:", "💡 Tip:",
               "Automatic Mixed Precision (AMP)", "`Trainer.fit` stopped:", "`weights_only` was not set")

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not any(notice in text for notice in self.NOTICES)
