"""Export: an llmexp Llama (and its tokenizer) as a transformers folder that
`AutoModelForCausalLM` / `AutoTokenizer` load offline. Weight names: llmexp/models/hf.py."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import save_file

from llmexp.interop.tokenizer import save_hf_tokenizer
from llmexp.models.hf import to_hf_state_dict
from llmexp.models.llama import Llama, LlamaShape


def hf_config(shape: LlamaShape, bos_token_id: Optional[int], eos_token_id: Optional[int], dtype: torch.dtype):
    """A transformers LlamaConfig with exactly llmexp's shape."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=shape.vocab_size, hidden_size=shape.d_model, intermediate_size=shape.ffn_dim,
        num_hidden_layers=shape.n_layers, num_attention_heads=shape.n_heads, num_key_value_heads=shape.n_kv_heads,
        head_dim=shape.head_dim, max_position_embeddings=shape.max_seq_len, rms_norm_eps=shape.norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": shape.rope_theta},
        tie_word_embeddings=shape.tie_embeddings, initializer_range=shape.init_std, hidden_act="silu",
        attention_bias=False, mlp_bias=False, bos_token_id=bos_token_id, eos_token_id=eos_token_id,
        pad_token_id=None, architectures=["LlamaForCausalLM"], dtype=str(dtype).removeprefix("torch."),
    )


def save_hf_model(model: Llama, out_dir: str | os.PathLike, tokenizer=None, dtype: torch.dtype = torch.float32) -> Path:
    """Write `model` (and `tokenizer`, an llmexp Tokenizer) as a transformers folder:
    config.json, generation_config.json, model.safetensors, tokenizer.json, tokenizer_config.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    eot = tokenizer.eot_id if tokenizer is not None else None
    config = hf_config(model.shape, bos_token_id=eot, eos_token_id=eot, dtype=dtype)
    config.save_pretrained(out)
    from transformers import GenerationConfig

    GenerationConfig(bos_token_id=eot, eos_token_id=eot).save_pretrained(out)
    state = {k: v.detach().to("cpu", dtype) for k, v in model.state_dict().items()}
    save_file(to_hf_state_dict(state, model.shape), str(out / "model.safetensors"), metadata={"format": "pt"})
    if tokenizer is not None:
        save_hf_tokenizer(tokenizer, out, model_max_length=model.shape.max_seq_len)
    return out
