"""One way to open any model llmexp can evaluate, generate from or export: an llmexp checkpoint
(.ckpt or run folder, of any stage: LoRA runs merged, reward models with their head), a
transformers folder, or `hf:<org>/<name>[@revision]` from the hub cache."""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

import torch

from llmexp.checkpoints import checkpoint_path, load_checkpoint, model_state_dict
from llmexp.hf_config import is_hf_folder
from llmexp.hub import resolve_hub
from llmexp.io import checkpoint_file_problem
from llmexp.models import Llama, shape_from_fields
from llmexp.models.heads import ScalarModel
from llmexp.tokenizers import Tokenizer


@dataclass
class LoadedModel:
    model: Llama | ScalarModel  # a ScalarModel for a reward run
    tokenizer: Tokenizer
    source: str  # "llmexp" | "hf"
    path: Path
    config: Optional[dict[str, Any]] = None  # the resolved llmexp config an llmexp checkpoint carries
    lora_state: Optional[dict[str, torch.Tensor]] = None  # a LoRA run's adapter weights (unmerged)

    @property
    def family(self) -> Optional[str]:
        return ((self.config or {}).get("model") or {}).get("family")

    @property
    def language_model(self) -> Llama:
        return self.model.backbone if isinstance(self.model, ScalarModel) else self.model


def load_model(path: str | os.PathLike, tokenizer: Optional[str | os.PathLike] = None,
               max_seq_len: Optional[int] = None) -> LoadedModel:
    """`path`: a .ckpt, an llmexp run folder, a transformers folder or hf:<name>. `tokenizer`: a
    folder with llmexp's tokenizer/ layout, for a .ckpt that lies outside its run folder."""
    path = resolve_hub(str(path)) if str(path).startswith("hf:") else Path(path).expanduser()
    if is_hf_folder(path):
        from llmexp.models.hf import load_hf_model
        from llmexp.tokenizers.hf import tokenizer_from_hf

        tok = Tokenizer.load(Path(tokenizer)) if tokenizer else tokenizer_from_hf(path)
        return LoadedModel(load_hf_model(path, max_seq_len).eval(), tok, "hf", Path(path))
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
    embedding = next(v for k, v in state.items() if k.endswith("tok_embeddings.weight"))
    shape = shape_from_fields(config["model"], embedding.shape[0])
    if max_seq_len is not None:
        shape = replace(shape, max_seq_len=max_seq_len)
    stage = config.get("stage") or {}
    model = ScalarModel(Llama(shape)) if stage.get("name") == "reward" else Llama(shape)
    from llmexp.stages.posttrain import load_trained  # merges a LoRA run's adapters (peft)

    load_trained(model, ckpt)
    lora = (stage.get("lora") or {}).get("enabled")
    lora_state = {k: v for k, v in state.items() if "lora_" in k} if lora else None
    tok_dir = Path(tokenizer) if tokenizer else ckpt.parent.parent / "tokenizer"  # <run>/checkpoints/x.ckpt
    if not (tok_dir / "tokenizer.json").is_file():
        raise FileNotFoundError(f"no tokenizer at {tok_dir}: pass the run's tokenizer/ folder (tokenizer=...)")
    return LoadedModel(model.eval(), Tokenizer.load(tok_dir), "llmexp", ckpt, config, lora_state)
