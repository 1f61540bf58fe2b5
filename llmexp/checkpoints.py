"""Reading llmexp checkpoints without unpickling code: weights and the config they carry."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def checkpoint_path(path: str | Path) -> Path:
    """A .ckpt file, or a run folder (its checkpoints/last.ckpt)."""
    from llmexp.parallel.checkpoint import is_distributed_checkpoint

    path = Path(path).expanduser()
    return path / "checkpoints" / "last.ckpt" if path.is_dir() and not is_distributed_checkpoint(path) else path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    from llmexp.parallel.checkpoint import is_distributed_checkpoint, loadable_checkpoint

    path = checkpoint_path(path)
    if is_distributed_checkpoint(path):  # fsdp/tp shards: gathered into one file first
        path = loadable_checkpoint(path, "single")
    # weights_only: tensors and plain containers only, never arbitrary pickled objects.
    return torch.load(path, map_location="cpu", weights_only=True)


def model_state_dict(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The network's weights out of a Lightning checkpoint (the module holds it as `model`)."""
    prefix = "model."
    return {k[len(prefix):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}


def load_model_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Start `model` from the weights of an llmexp checkpoint or run folder, or of a
    transformers Llama-family folder (safetensors only, names mapped in llmexp/interop/hf.py)."""
    from llmexp.hf_config import is_hf_folder

    if is_hf_folder(path):
        from llmexp.models.hf import load_hf_weights

        load_hf_weights(model, path)
        return
    state = model_state_dict(load_checkpoint(path))
    model.load_state_dict(state, strict=True)
