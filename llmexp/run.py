"""Run pass: the run folder, preflight, data, build, fit, and what a run leaves behind.

A run folder holds config.yaml, command.txt, meta.json, plan.json, metrics.csv, loss.png,
checkpoints/{last,best}.ckpt, tokenizer/ and summary.json (docs/run-contract.md).
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

import yaml

from llmexp.config.errors import ConfigError
from llmexp.config.schema import Config
from llmexp.io import atomic_write_text
from llmexp.parallel.checkpoint import is_checkpoint, is_distributed_checkpoint, loadable_checkpoint
from llmexp.parallel.layout import layout_of
from llmexp.plan import GiB, Plan, format_plan

# Keys (dotted prefixes) that do not change what is trained: left out of the run folder's hash
# and of the check that a resumed run continues the same experiment.
NON_EXPERIMENT_KEYS = ("run_dir", "resume", "dry_run", "out_dir", "logger", "eval", "data.num_proc",
                       "data.verify_checksums", "trainer.num_workers")
# Sections a resumed run must share with the run it continues.
RESUME_MUST_MATCH = ("model", "tokenizer", "data", "stage")


class PreflightError(RuntimeError):
    """The plan cannot run on this machine: says what it needs, what there is, and what to do."""


def config_dict(cfg: Config) -> dict[str, Any]:
    return asdict(cfg)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}: how trackers and sweeps name config keys."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def experiment_keys(tree: dict[str, Any]) -> dict[str, Any]:
    """Flat config keys that define the experiment (NON_EXPERIMENT_KEYS left out)."""
    return {k: v for k, v in flatten(tree).items()
            if not any(k == p or k.startswith(p + ".") for p in NON_EXPERIMENT_KEYS)}


def experiment_hash(cfg: Config) -> str:
    tree = experiment_keys(config_dict(cfg))
    return hashlib.sha256(json.dumps(tree, sort_keys=True, default=str).encode()).hexdigest()[:8]


def resolve_run_dir(cfg: Config) -> tuple[Path, Optional[Path]]:
    """(run folder, checkpoint to resume from or None)."""
    if cfg.resume:
        target = Path(cfg.resume).expanduser()
        # A run folder, a .ckpt file, or a sharded checkpoint folder (fsdp/tp: llmexp/parallel/checkpoint.py).
        run_folder = target.is_dir() and not is_distributed_checkpoint(target)
        checkpoint = target / "checkpoints" / "last.ckpt" if run_folder else target
        if not is_checkpoint(checkpoint):
            raise ConfigError("resume", cfg.resume, "no checkpoints/last.ckpt in that run folder")
        run_dir = Path(cfg.run_dir).expanduser() if cfg.run_dir else checkpoint.parent.parent
        return run_dir.resolve(), checkpoint.resolve()
    if cfg.run_dir:
        run_dir = Path(cfg.run_dir).expanduser()
    else:
        name = cfg.name or f"{cfg.stage.name}-{cfg.model.name}"
        # Under a W&B sweep agent the run id names the run: two runs of one grid point are two
        # runs, and the agent resuming its run id lands in the same folder.
        run_id = os.environ.get("WANDB_RUN_ID") or experiment_hash(cfg)
        run_dir = Path(cfg.out_dir).expanduser() / f"{name}-{run_id}"
    last = run_dir / "checkpoints" / "last.ckpt"
    return run_dir.resolve(), (last.resolve() if is_checkpoint(last) else None)


def check_same_experiment(cfg: Config, run_dir: Path) -> None:
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        return
    old, new = experiment_keys(yaml.safe_load(saved_path.read_text())), experiment_keys(config_dict(cfg))
    for section in RESUME_MUST_MATCH:
        keys = {k for k in set(old) | set(new) if k.startswith(section + ".")}
        for key in sorted(keys):
            if old.get(key) != new.get(key):
                raise ConfigError(
                    key, new.get(key),
                    f"run folder {run_dir} holds a run with {key}={old.get(key)!r}: choose another run_dir",
                )


def _git_commit(folder: Path) -> Optional[str]:
    try:
        out = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(folder), "status", "--porcelain"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def preflight(plan: Plan, accelerator: str) -> None:
    """Stop before allocating anything when the plan cannot fit the device's memory."""
    need = plan.memory.total
    if accelerator == "gpu":
        import torch

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


def write_run_files(cfg: Config, run_dir: Path, plan: Plan, argv: list[str]) -> dict[str, Any]:
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(config_dict(cfg), sort_keys=False))
    atomic_write_text(run_dir / "plan.json", json.dumps(plan.to_dict(), indent=2))
    with (run_dir / "command.txt").open("a") as f:  # one line per invocation, resumes included
        f.write(" ".join(shlex.quote(a) for a in [sys.executable, "-m", "llmexp", *argv]) + "\n")
    import llmexp

    meta = {
        "command": argv,
        "cwd": os.getcwd(),
        "git_commit": _git_commit(Path.cwd()),
        "llmexp_version": llmexp.__version__,
        "llmexp_commit": _git_commit(Path(llmexp.__file__).parent),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return meta


def run(cfg: Config, plan: Plan, argv: list[str]) -> dict[str, Any]:
    """Train `cfg` as `plan` says; returns the summary (also written to summary.json)."""
    if cfg.stage.name == "eval":  # benchmarks on init_from, nothing to train (llmexp/eval/harness.py)
        from llmexp.eval.harness import run_eval

        return run_eval(cfg, plan, argv)
    run_dir, resume_from = resolve_run_dir(cfg)
    check_same_experiment(cfg, run_dir)

    from llmexp.parallel.strategy import resolve_accelerator

    accelerator = resolve_accelerator(cfg.trainer.accelerator)
    preflight(plan, accelerator)
    meta = write_run_files(cfg, run_dir, plan, argv)
    print(format_plan(plan), flush=True)

    import lightning as L

    from llmexp.build import build, quiet_lightning_warnings
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
    module, datamodule, trainer = build(cfg, plan, data, run_dir, checkpoint_meta, flatten(config_dict(cfg)))
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
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume_from) if resume_from else None)
    if module.last_val_step != trainer.global_step:
        _validate(trainer, module, datamodule)
    trainer.save_checkpoint(run_dir / "checkpoints" / "last.ckpt")  # the final state, whatever the interval
    summary = _summary(cfg, plan, run_dir, trainer, module, baseline, initial_val, time.perf_counter() - started)
    if trainer.is_global_zero:
        atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
        _print_outcome(summary, run_dir)
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
        f"\nvalidation loss {summary['initial_val_loss']:.3f} -> {summary['val_loss']:.3f} nats/token "
        + (f"(unigram entropy of the validation text: {baseline:.3f}) " if baseline is not None else "")
        + f"after {summary['steps']} steps, {summary['tokens']:,} tokens, {summary['wall_seconds']:.0f} s\n"
        f"  run folder   {run_dir}\n"
        f"  checkpoints  {run_dir / 'checkpoints' / 'last.ckpt'} (last), {run_dir / 'checkpoints' / 'best.ckpt'} (best)\n"
        f"  metrics      {run_dir / 'metrics.csv'}\n"
        f"  loss curve   {run_dir / 'loss.png'}",
        flush=True,
    )
