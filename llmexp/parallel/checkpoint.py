"""Checkpoints across layouts.

single/ddp write one file (`last.ckpt`); fsdp/tp/fsdp_tp write, by default, a folder of
per-rank shards in PyTorch distributed checkpoint (DCP) format plus Lightning's `meta.pt`
(`parallelism.distributed_checkpoint=false` makes them gather one file on rank 0 instead).

- file -> fsdp/tp: Lightning's ModelParallelStrategy loads a full checkpoint and shards it.
- folder -> fsdp/tp, any mesh: DCP reshards on load.
- folder -> single/ddp: `consolidate` turns the folder into the file those strategies read
  (done on the fly by `loadable_checkpoint`; by hand with
  `python -m llmexp.parallel.checkpoint <folder> [--out FILE]`).

What a path holds (`is_checkpoint`, ...) is asked in llmexp/artifacts.py, without torch.
"""
from __future__ import annotations

import copy
import os
import tempfile
from pathlib import Path
from typing import Any

from llmexp.artifacts import META, is_distributed_checkpoint
from llmexp.config.errors import OneLineParser


def _optimizer_by_ids(state: dict[str, Any]) -> dict[str, Any]:
    """DCP keys optimizer state by parameter name; torch.optim wants the running index of each
    parameter over the param groups, in order (what Optimizer.state_dict() writes)."""
    index: dict[str, int] = {}
    groups = []
    for group in state["param_groups"]:
        ids = []
        for name in group["params"]:
            index.setdefault(name, len(index))
            ids.append(index[name])
        groups.append({**group, "params": ids})
    return {"state": {index[name]: value for name, value in state["state"].items()}, "param_groups": groups}


PARAM_NAMES = "optimizer_param_names"  # per optimizer, per group: parameter names in id order
_WRAPPERS = ("_checkpoint_wrapped_module.", "_orig_mod.", "_fsdp_wrapped_module.")


def optimizer_param_names(module, optimizers) -> list[list[list[str]]]:
    """Names of the parameters behind a plain optimizer's integer ids, saved beside its state so
    fsdp/tp can load it by name. (Lightning's own re-keying assumes ids follow
    module.parameters(); llmexp's decay/no-decay groups reorder them.)"""
    names = {}
    for name, p in module.named_parameters(remove_duplicate=True):
        for wrapper in _WRAPPERS:
            name = name.replace(wrapper, "")
        names[id(p)] = name
    return [[[names[id(p)] for p in group["params"]] for group in opt.param_groups] for opt in optimizers]


def _optimizer_by_names(state: dict[str, Any], names: list[list[str]]) -> dict[str, Any]:
    """The inverse of _optimizer_by_ids, with the names saved at checkpoint time."""
    flat = [n for group in names for n in group]
    groups = [{**group, "params": list(group_names)} for group, group_names in zip(state["param_groups"], names)]
    return {"state": {flat[i]: value for i, value in state["state"].items()}, "param_groups": groups}


AUTOMATIC = "epoch_loop.automatic_optimization.optim_progress"
MANUAL = "epoch_loop.manual_optimization.optim_step_progress"


def rescale_batch_progress(checkpoint: dict[str, Any], accumulation: int, manual: bool = False) -> None:
    """Lightning counts micro-batches in its loop state; a run resumed under another layout can
    read a different number of loader batches per optimizer step (dp changed, same global batch;
    a pipeline reads one batch per step). Rescale the counts so the resumed run sits on a step
    boundary, and move the optimizer-step count to where the resuming run's loop reads it
    (`manual`: pipeline stages step the optimizer themselves)."""
    loop = checkpoint.get("loops", {}).get("fit_loop", {})
    automatic_steps = loop.get(AUTOMATIC, {}).get("optimizer", {}).get("step")
    steps_progress = automatic_steps if automatic_steps and automatic_steps["total"]["completed"] else loop.get(MANUAL)
    steps = steps_progress["total"]["completed"] if steps_progress else 0
    progress = loop.get("epoch_loop.batch_progress")
    if not steps or not progress or not progress["total"]["completed"]:
        return
    if manual and MANUAL in loop:
        loop[MANUAL] = copy.deepcopy(steps_progress)
    elif not manual and automatic_steps is not None:
        loop[AUTOMATIC]["optimizer"]["step"] = copy.deepcopy(steps_progress)
    saved = progress["total"]["completed"] // steps  # the saving run's batches per step
    if saved == accumulation or progress["total"]["completed"] % steps:
        return
    for scope in ("total", "current"):
        for key, value in progress[scope].items():
            progress[scope][key] = value // saved * accumulation


def consolidate(folder: str | os.PathLike, out_file: str | os.PathLike) -> Path:
    """A DCP checkpoint folder -> one Lightning checkpoint file with full tensors."""
    import torch
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    folder, out_file = Path(folder), Path(out_file)
    with tempfile.TemporaryDirectory(dir=out_file.parent) as tmp:
        raw_path = Path(tmp) / "raw.pt"
        dcp_to_torch_save(folder, raw_path)  # gathers every shard into full tensors, no process group
        raw = torch.load(raw_path, map_location="cpu", weights_only=True)
    checkpoint = torch.load(folder / META, map_location="cpu", weights_only=True)
    checkpoint["state_dict"] = raw.pop("state_dict")
    optimizers = sorted(k for k in raw if k.startswith("optimizer_"))
    checkpoint["optimizer_states"] = [_optimizer_by_ids(raw[k]) for k in optimizers]
    out_file.parent.mkdir(parents=True, exist_ok=True)
    from llmexp.callbacks import AtomicCheckpointIO

    AtomicCheckpointIO().save_checkpoint(checkpoint, out_file)
    return out_file


def loadable_checkpoint(path: Path, strategy: str) -> Path:
    """What Lightning's `ckpt_path` gets: a DCP folder is consolidated into a temporary file for
    strategies that read single files (single, ddp, deepspeed); every rank makes its own copy,
    so no rank waits on another's file system view."""
    from llmexp.layout import MODEL_PARALLEL

    if strategy in MODEL_PARALLEL:
        return path if is_distributed_checkpoint(path) else _keyed_by_names(path)
    if not is_distributed_checkpoint(path):
        _refuse_gathered_model_parallel(path, strategy)
        return path
    out = Path(tempfile.mkdtemp(prefix="llmexp-consolidated-")) / "last.ckpt"
    return consolidate(path, out)


def _refuse_gathered_model_parallel(path: Path, strategy: str) -> None:
    """A single-file fsdp/tp checkpoint (distributed_checkpoint=false) keeps AdamW state in
    Lightning's module order, which single/ddp would map onto the wrong parameters: refuse it."""
    import torch

    from llmexp.config.errors import ConfigError
    from llmexp.layout import MODEL_PARALLEL

    checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    saved = checkpoint.get("llmexp", {}).get("config", {}).get("parallelism", {}).get("strategy")
    if saved in MODEL_PARALLEL and checkpoint.get("optimizer_states"):
        raise ConfigError("resume", str(path), f"a single-file {saved} checkpoint cannot resume under {strategy} "
                          f"(its optimizer state is in module order): resume with parallelism={saved}, or "
                          "save sharded checkpoints (parallelism.distributed_checkpoint=true)")


def _keyed_by_names(path: Path) -> Path:
    """A single-file checkpoint (single/ddp) for fsdp/tp: optimizer state keyed by parameter
    name, which Lightning's ModelParallelStrategy then shards as it loads."""
    import torch

    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    names = checkpoint.pop(PARAM_NAMES, None)
    if names is None or not checkpoint.get("optimizer_states"):
        return path
    checkpoint["optimizer_states"] = [_optimizer_by_names(s, n) for s, n in zip(checkpoint["optimizer_states"], names)]
    out = Path(tempfile.mkdtemp(prefix="llmexp-by-name-")) / "last.ckpt"
    torch.save(checkpoint, out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = OneLineParser(
        prog="python -m llmexp.parallel.checkpoint",
        description="Consolidate a sharded (DCP) llmexp checkpoint folder into one .ckpt file "
                    "that single/ddp runs, init_from=, export and generate read.",
    )
    parser.add_argument("checkpoint", help="a DCP checkpoint folder, or a run folder (its checkpoints/last.ckpt)")
    parser.add_argument("--out", help="output file (default: <checkpoint>.consolidated.ckpt beside it)")
    args = parser.parse_args(argv)
    path = Path(args.checkpoint).expanduser()
    if path.is_dir() and not is_distributed_checkpoint(path):
        path = path / "checkpoints" / "last.ckpt"
    if not is_distributed_checkpoint(path):
        parser.error(f"{path} is not a distributed checkpoint folder (no {META} and .metadata)")
    out = Path(args.out) if args.out else path.with_name(path.stem + ".consolidated.ckpt")
    print(consolidate(path, out))


if __name__ == "__main__":
    main()
