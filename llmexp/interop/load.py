"""One way to open any model llmexp can evaluate or export: an llmexp checkpoint (.ckpt or run
folder) or a transformers folder. Returns the llmexp Llama and llmexp Tokenizer."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

from llmexp.checkpoints import checkpoint_path, load_checkpoint, model_state_dict
from llmexp.hf_config import is_hf_folder
from llmexp.io import checkpoint_file_problem
from llmexp.models import Llama
from llmexp.tokenizers import Tokenizer


@dataclass
class LoadedModel:
    model: Llama
    tokenizer: Tokenizer
    source: str  # "llmexp" | "hf"
    path: Path
    config: Optional[dict[str, Any]] = None  # the resolved llmexp config an llmexp checkpoint carries


def load_model(path: str | os.PathLike, tokenizer: Optional[str | os.PathLike] = None,
               max_seq_len: Optional[int] = None) -> LoadedModel:
    """`path`: a .ckpt, an llmexp run folder, or a transformers folder. `tokenizer`: a folder
    with llmexp's tokenizer/ layout, for a .ckpt that lies outside its run folder."""
    path = Path(path).expanduser()
    if is_hf_folder(path):
        from llmexp.models.hf import load_hf_model
        from llmexp.tokenizers.hf import tokenizer_from_hf

        tok = Tokenizer.load(Path(tokenizer)) if tokenizer else tokenizer_from_hf(path)
        return LoadedModel(load_hf_model(path, max_seq_len).eval(), tok, "hf", path)
    ckpt = checkpoint_path(path)
    if not ckpt.exists():  # a .ckpt file, or a sharded (fsdp/tp) checkpoint folder
        raise FileNotFoundError(f"{path}: not a .ckpt, an llmexp run folder or a transformers folder")
    problem = checkpoint_file_problem(ckpt)
    if problem:
        raise ValueError(problem)
    checkpoint = load_checkpoint(ckpt)
    config = (checkpoint.get("llmexp") or {}).get("config")
    if config is None:
        raise ValueError(f"{ckpt} carries no llmexp config (checkpoint['llmexp']['config'])")
    state = model_state_dict(checkpoint)
    from dataclasses import fields

    from llmexp.config.schema import ModelConfig
    from llmexp.stages.base import model_shape

    known = {f.name for f in fields(ModelConfig)}
    model_cfg = ModelConfig(**{k: v for k, v in config["model"].items() if k in known})
    shape = model_shape(SimpleNamespace(model=model_cfg), state["tok_embeddings.weight"].shape[0])
    if max_seq_len is not None:
        from dataclasses import replace

        shape = replace(shape, max_seq_len=max_seq_len)
    model = Llama(shape)
    model.load_state_dict(state, strict=True)
    tok_dir = Path(tokenizer) if tokenizer else ckpt.parent.parent / "tokenizer"  # <run>/checkpoints/x.ckpt
    if not (tok_dir / "tokenizer.json").is_file():
        raise FileNotFoundError(f"no tokenizer at {tok_dir}: pass the run's tokenizer/ folder (tokenizer=...)")
    return LoadedModel(model.eval(), Tokenizer.load(tok_dir), "llmexp", ckpt, config)

