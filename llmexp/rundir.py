"""The run folder: where a config's run lives, whether a folder holds the same experiment, and
the files every run writes first (config.yaml, plan.json, command.txt, meta.json).

Runtime layer: training (llmexp/run.py) and evaluation (llmexp/eval/harness.py) both use it.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any, Optional

import yaml

import llmexp
from llmexp.config.errors import ConfigError
from llmexp.config.schema import Config
from llmexp.io import atomic_write_text
from llmexp.artifacts import is_checkpoint, is_distributed_checkpoint
from llmexp.plan import Plan

# Keys (dotted prefixes) that do not change what is trained: left out of the run folder's hash
# and of the check that a resumed run continues the same experiment.
# (data.num_proc is gone from the config; run folders saved before still carry it.)
NON_EXPERIMENT_KEYS = ("run_dir", "resume", "dry_run", "out_dir", "logger", "eval", "data.num_proc",
                       "data.verify_checksums", "trainer.num_workers")
# Sections a resumed run must share with the run it continues.
RESUME_MUST_MATCH = ("model", "tokenizer", "data", "stage")


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


def run_dir_of(cfg: Config) -> Path:
    """The run folder: run_dir, the folder of resume=, or <out_dir>/<name>-<id>."""
    if cfg.run_dir:
        return Path(cfg.run_dir).expanduser().resolve()
    if cfg.resume:
        target = Path(cfg.resume).expanduser()
        # A run folder, a .ckpt file, or a sharded checkpoint folder (fsdp/tp: llmexp/parallel/checkpoint.py).
        run_folder = target.is_dir() and not is_distributed_checkpoint(target)
        return (target if run_folder else target.parent.parent).resolve()
    name = cfg.name or f"{cfg.stage.name}-{cfg.model.name}"
    # Under a W&B sweep agent the run id names the run: two runs of one grid point are two
    # runs, and the agent resuming its run id lands in the same folder.
    run_id = os.environ.get("WANDB_RUN_ID") or experiment_hash(cfg)
    return (Path(cfg.out_dir).expanduser() / f"{name}-{run_id}").resolve()


def resolve_run_dir(cfg: Config) -> tuple[Path, Optional[Path]]:
    """(run folder, checkpoint to resume from or None)."""
    run_dir = run_dir_of(cfg)
    if cfg.resume:
        target = Path(cfg.resume).expanduser()
        run_folder = target.is_dir() and not is_distributed_checkpoint(target)
        checkpoint = newest_good_checkpoint(target / "checkpoints") if run_folder else target
        if checkpoint is None or not is_checkpoint(checkpoint):
            raise ConfigError("resume", cfg.resume, "no readable checkpoint in that run folder's checkpoints/")
        return run_dir, checkpoint.resolve()
    last = newest_good_checkpoint(run_dir / "checkpoints")
    return run_dir, (last.resolve() if last is not None else None)


# ModelCheckpoint's file name for the checkpoint of an optimizer step (llmexp/build.py).
STEP_CHECKPOINT = "step-{step:08d}"


def newest_good_checkpoint(folder: Path) -> Optional[Path]:
    """last.ckpt, or when it is unreadable (truncated, corrupt, a dangling link) the newest
    readable step-N.ckpt, with a one-line notice; None when there is no checkpoint at all."""
    last = folder / "last.ckpt"
    steps = sorted(folder.glob("step-*.ckpt"), reverse=True) if folder.is_dir() else []
    for candidate in [last, *steps]:
        if _readable(candidate):
            if candidate != last and (last.exists() or last.is_symlink()):
                print(f"llmexp: {last} is unreadable (truncated or corrupt); resuming from {candidate.name}",
                      file=sys.stderr, flush=True)
            return candidate
    return None


def prune_step_checkpoints(folder: Path, keep: int) -> None:
    """Keep the `keep` newest step-N checkpoints. Lightning keeps its own newest `keep` during
    fit but never deletes the checkpoint a run resumed from; this clears such leftovers."""
    for old in sorted(folder.glob("step-*.ckpt"), reverse=True)[keep:]:
        shutil.rmtree(old) if old.is_dir() else old.unlink(missing_ok=True)


def _readable(path: Path) -> bool:
    """A sharded checkpoint folder, or a complete torch.save zip archive (its central directory,
    written last, is intact): cheap, it reads only the end of the file."""
    if is_distributed_checkpoint(path):
        return True
    try:
        with zipfile.ZipFile(path):
            return True
    except (OSError, zipfile.BadZipFile):
        return False


def lock_run_dir(run_dir: Path) -> Optional[IO[str]]:
    """One writer per run folder: an exclusive lock on <run_dir>/.lock, held until the process
    exits (the kernel releases it even after kill -9). Only global rank 0 of a multi-process
    run takes it; the returned file must stay open. Refused with a ConfigError when held."""
    from lightning.pytorch.utilities import rank_zero_only  # lazily: Lightning is slow to import

    if rank_zero_only.rank != 0:
        return None
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = (run_dir / ".lock").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        raise ConfigError("run_dir", str(run_dir), f"in use by another llmexp process (pid {holder}): "
                          "wait for it to end, or choose another run_dir") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


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


def write_run_files(cfg: Config, run_dir: Path, plan: Plan, argv: list[str]) -> dict[str, Any]:
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(config_dict(cfg), sort_keys=False))
    atomic_write_text(run_dir / "plan.json", json.dumps(plan.to_dict(), indent=2))
    with (run_dir / "command.txt").open("a") as f:  # one line per invocation, resumes included
        f.write(" ".join(shlex.quote(a) for a in [sys.executable, "-m", "llmexp", *argv]) + "\n")
    meta = {
        "command": argv,
        "cwd": os.getcwd(),
        "git_commit": _git_commit(Path.cwd()),
        "llmexp_version": llmexp.__version__,
        "llmexp_commit": _git_commit(Path(llmexp.__file__).parent),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return meta
