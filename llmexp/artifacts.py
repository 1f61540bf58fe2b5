"""What a path on disk holds, asked without torch: an llmexp checkpoint (one file, or a folder
of distributed-checkpoint shards), a run folder, a transformers folder, and the config a run
saved. Core: the validate and init_from passes ask these before anything heavy is imported.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Optional

import yaml

from llmexp.hf_config import is_hf_folder

META = "meta.pt"  # Lightning's non-tensor state beside the DCP shards (llmexp/parallel/checkpoint.py)
# Run folders a pipeline will create, by absolute path -> the config each will hold: a pipeline
# validates every step before the first one runs, when later steps' init_from does not exist yet.
PlannedRuns = Mapping[str, dict]


def is_distributed_checkpoint(path: str | os.PathLike) -> bool:
    path = Path(path)
    return path.is_dir() and (path / META).is_file() and (path / ".metadata").is_file()


def is_checkpoint(path: str | os.PathLike) -> bool:
    """A checkpoint file or a DCP checkpoint folder."""
    return Path(path).is_file() or is_distributed_checkpoint(path)


def is_run_folder(path: str | os.PathLike) -> bool:
    """An llmexp run folder: it holds the config.yaml and plan.json every run writes first (llmexp/rundir.py)."""
    path = Path(path).expanduser()
    return (path / "config.yaml").is_file() and (path / "plan.json").is_file()


def planned_config(path: str | os.PathLike, planned: PlannedRuns) -> Optional[dict]:
    return planned.get(os.path.abspath(os.path.expanduser(str(path))))


def is_model_source(path: str | os.PathLike, planned: PlannedRuns = {}) -> bool:
    """Something weights can start from: a checkpoint, a run folder with checkpoints/last.ckpt,
    a transformers folder, or a run folder a pipeline will create."""
    path = os.path.expanduser(str(path))
    return (is_checkpoint(path) or is_checkpoint(os.path.join(path, "checkpoints", "last.ckpt"))
            or is_hf_folder(path) or planned_config(path, planned) is not None)


def saved_config(path: str | os.PathLike, planned: PlannedRuns = {}) -> Optional[dict]:
    """The resolved config saved with an llmexp run folder or checkpoint (its run folder's
    config.yaml; a checkpoint file's run folder is two levels up), a planned pipeline step's,
    or None when there is none."""
    planned_cfg = planned_config(path, planned)
    if planned_cfg is not None:
        return planned_cfg
    path = os.path.expanduser(str(path))
    run_dir = path if os.path.isdir(path) else os.path.dirname(os.path.dirname(os.path.abspath(path)))
    saved = os.path.join(run_dir, "config.yaml")
    if not os.path.isfile(saved):
        return None
    with open(saved) as f:
        loaded: Any = yaml.safe_load(f)
    return loaded if isinstance(loaded, dict) else None
