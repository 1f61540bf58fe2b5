"""Run pass: the run folder, preflight, data, build, fit, and what a run leaves behind.

The run folder's own files are written by llmexp/rundir.py. A run folder holds config.yaml, command.txt, meta.json, plan.json, metrics.csv, loss.png,
checkpoints/{last,best}.ckpt, tokenizer/ and summary.json (docs/run-contract.md).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from llmexp.config.errors import ConfigError
from llmexp.config.schema import Config
from llmexp.io import atomic_write_text, remove_stale_temp_files
from llmexp.outcomes import Diverged, Preempted, RunStopped
from llmexp.parallel.checkpoint import loadable_checkpoint
from llmexp.plan import GiB, Plan, format_plan, layout_of, resolve_auto
from llmexp.rundir import (check_same_experiment, config_dict, flatten, lock_run_dir, newest_good_checkpoint,
                           prune_step_checkpoints, resolve_run_dir, run_dir_of, write_run_files)

# Callbacks a caller adds to the run's Trainer, made once the run folder and tokenizer exist
# (the apps layer adds lm-eval's in-training evaluation this way).
ExtraCallbacks = Callable[[Path, Any], Sequence[Any]]


class PreflightError(RuntimeError):
    """The plan cannot run on this machine: says what it needs, what there is, and what to do."""


def preflight(plan: Plan, accelerator: str) -> None:
    """Stop before allocating anything when the plan cannot fit the device's memory."""
    need = plan.memory.total
    if accelerator == "gpu":
        import torch

        if not torch.cuda.is_available():  # a device node without a usable CUDA (a CPU-only torch build)
            raise PreflightError("trainer.accelerator=gpu: torch sees no CUDA device here "
                                 f"(torch {torch.__version__}): use trainer.accelerator=cpu or a CUDA build of torch")
        have = min(torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count()))
        device = torch.cuda.get_device_name(0)
    else:
        import psutil

        have = psutil.virtual_memory().available / max(1, plan.world_size)
        device = "cpu"
    if need > 0.9 * have:
        m = plan.memory
        raise PreflightError(
            f"model={plan.model} needs {need / GiB:.1f} GiB per device (weights {m.weights / GiB:.1f}, "
            f"gradients {m.gradients / GiB:.1f}, optimizer {m.optimizer / GiB:.1f}, activations "
            f"{(m.activations_checkpointed if m.activation_checkpointing else m.activations) / GiB:.1f}) "
            f"but {device} has {have / GiB:.1f} GiB available: use a smaller model, a smaller "
            "trainer.micro_batch_size, parallelism.activation_checkpointing=true, or more devices "
            "with a sharded parallelism"
        )


def run(cfg: Config, plan: Plan, argv: list[str], extra_callbacks: ExtraCallbacks | None = None) -> dict[str, Any]:
    """Train `cfg` as `plan` says; returns the summary (also written to summary.json).
    `extra_callbacks(run_dir, tokenizer)` adds Trainer callbacks the caller owns."""
    run_dir = run_dir_of(cfg)
    check_same_experiment(cfg, run_dir)
    lock = lock_run_dir(run_dir)  # held until this process exits
    if lock is not None:  # global rank 0: the folder is this process's to tidy
        remove_stale_temp_files(run_dir / "checkpoints")  # a kill mid-save left them
    run_dir, resume_from = resolve_run_dir(cfg)  # now that no other process writes the folder

    from llmexp.parallel.host_memory import keep_freed_memory
    from llmexp.parallel.strategy import cpu_precision, resolve_accelerator

    accelerator = resolve_accelerator(cfg.trainer.accelerator)
    preflight(plan, accelerator)
    if accelerator == "cpu":
        keep_freed_memory()  # no page faults on every step's activations
    meta = write_run_files(cfg, run_dir, plan, argv)  # the config as given: a resume re-derives the same choice
    cfg = resolve_auto(cfg)  # parallelism=auto: build with the checkpointing and micro-batch the plan chose
    cfg = cpu_precision(cfg, accelerator, argv)  # bf16 from a recipe, on a CPU that would emulate it: fp32
    print(format_plan(plan), flush=True)

    import lightning as L

    from llmexp.build import build, quiet_lightning_warnings
    from llmexp.callbacks import save_last_checkpoint
    from llmexp.stages import STAGES

    quiet_lightning_warnings()
    started = time.perf_counter()
    data = STAGES[cfg.stage.name].prepare(cfg)
    if data.tokenizer.n_vocab > plan.vocab_size:
        raise ConfigError("model.vocab_size", plan.vocab_size, f"tokenizer has {data.tokenizer.n_vocab} tokens")
    data.tokenizer.save(run_dir / "tokenizer")
    baseline = getattr(data, "val_unigram_entropy", None)
    meta.update(data_fingerprint=data.fingerprint, tokenizer=data.tokenizer.name, val_unigram_entropy=baseline)
    atomic_write_text(run_dir / "meta.json", json.dumps(meta, indent=2))
    print(data.describe(), flush=True)
    if hasattr(data, "summary"):  # per-source tokens, bytes/token and cleaning: the run's data.json
        atomic_write_text(run_dir / "data.json", json.dumps(data.summary(), indent=2))

    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    checkpoint_meta = {"config": config_dict(cfg), **meta}
    extra = list(extra_callbacks(run_dir, data.tokenizer)) if extra_callbacks else []
    module, datamodule, trainer = build(cfg, plan, data, run_dir, checkpoint_meta, flatten(config_dict(cfg)), extra)
    if hasattr(datamodule, "mixture_report"):
        print(datamodule.mixture_report(plan.steps), flush=True)
    initial_val = None
    if resume_from is None:
        initial_val = _validate(trainer, module, datamodule)
        print(f"step 0: validation loss {initial_val:.3f}", flush=True)
    else:
        print(f"resuming from {resume_from}", flush=True)
    if resume_from is not None:  # a sharded folder is consolidated for single/ddp
        resume_from = loadable_checkpoint(resume_from, layout_of(cfg).strategy)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume_from) if resume_from else None,
                    weights_only=True)  # tensors and plain containers only, never pickled code
    except (Diverged, Preempted) as stop:
        summary = _stopped_summary(stop, run_dir, trainer, time.perf_counter() - started)
        if trainer.is_global_zero:
            atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
        raise RunStopped(summary) from stop
    if module.last_val_step != trainer.global_step:
        _validate(trainer, module, datamodule)
    save_last_checkpoint(trainer, run_dir / "checkpoints" / "last.ckpt")  # the final state, whatever the interval
    if trainer.is_global_zero:
        prune_step_checkpoints(run_dir / "checkpoints", cfg.trainer.keep_checkpoints)
    summary = _summary(cfg, plan, run_dir, trainer, module, baseline, initial_val, time.perf_counter() - started)
    if trainer.is_global_zero:
        atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
        _print_outcome(summary, run_dir)
    return summary


def _stopped_summary(stop: Exception, run_dir: Path, trainer, seconds: float) -> dict[str, Any]:
    checkpoints = run_dir / "checkpoints"
    if isinstance(stop, Diverged):
        good = newest_good_checkpoint(checkpoints)
        saved = (f"last good checkpoint {good.resolve()}" if good is not None
                 else "no checkpoint was saved before it")
        status, step = "diverged", stop.step
        message = (f"training diverged: {stop.metric} is {stop.value} at step {stop.step}; {saved} "
                   "(lower optimizer.lr, set optimizer.grad_clip, or check the data)")
    else:
        status, step = "preempted", stop.step
        message = (f"stopped by {stop.signal_name} at step {stop.step}: saved {stop.checkpoint}; "
                   "rerun the same command to continue")
    summary = {"status": status, "message": message, "run_dir": str(run_dir), "steps": step,
               "wall_seconds": seconds, "checkpoints": {"last": str(checkpoints / "last.ckpt")}}
    if isinstance(stop, Preempted):  # a launcher's handler of that signal takes over (llmexp/multirun.py)
        summary["signal"] = stop.signal_name
    return summary


def _validate(trainer, module, datamodule) -> float:
    metrics = trainer.validate(module, datamodule=datamodule, verbose=False)
    return float(metrics[0]["val/loss"])


def _summary(cfg, plan, run_dir, trainer, module, baseline, initial_val, seconds) -> dict[str, Any]:
    from llmexp.callbacks import read_metrics

    metrics = read_metrics(run_dir / "metrics.csv")
    val = metrics.get("val/loss", [])
    train = metrics.get("train/loss", [])
    return {
        "status": "finished",
        "val_loss_meaning": module.val_loss_meaning,  # what val/loss measures for this stage, in its units
        "run_dir": str(run_dir),
        "val_loss": float(trainer.callback_metrics["val/loss"]),
        "best_val_loss": min((v for _, v in val), default=None),
        "initial_val_loss": initial_val if initial_val is not None else (val[0][1] if val else None),
        "train_loss": train[-1][1] if train else None,
        "val_unigram_entropy": baseline,
        "steps": trainer.global_step,
        "tokens": trainer.global_step * plan.tokens_per_step,
        "params_total": plan.params_total,
        "flops_per_token": plan.flops_per_token,
        "total_flops": plan.flops_per_token * trainer.global_step * plan.tokens_per_step,
        "wall_seconds": seconds,
        "checkpoints": {"last": str(run_dir / "checkpoints" / "last.ckpt"), "best": str(run_dir / "checkpoints" / "best.ckpt")},
    }


def _print_outcome(summary: dict[str, Any], run_dir: Path) -> None:
    baseline = summary["val_unigram_entropy"]
    print(
        f"\nvalidation loss {summary['initial_val_loss']:.3f} -> {summary['val_loss']:.3f} ({summary['val_loss_meaning']}) "
        + (f"(unigram entropy of the validation text: {baseline:.3f}) " if baseline is not None else "")
        + f"after {summary['steps']} steps, {summary['tokens']:,} tokens, {summary['wall_seconds']:.0f} s\n"
        f"  run folder   {run_dir}\n"
        f"  checkpoints  {run_dir / 'checkpoints' / 'last.ckpt'} (last), {run_dir / 'checkpoints' / 'best.ckpt'} (best)\n"
        f"  metrics      {run_dir / 'metrics.csv'}\n"
        f"  loss curve   {run_dir / 'loss.png'}",
        flush=True,
    )
