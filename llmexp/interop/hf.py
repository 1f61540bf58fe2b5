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


ARCHITECTURES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM",
                 "qwen3": "Qwen3ForCausalLM"}


def hf_config(shape: LlamaShape, family: str, bos_token_id: Optional[int], eos_token_id: Optional[int],
              dtype: torch.dtype, pad_token_id: Optional[int] = None):
    """The transformers config of `family` with exactly llmexp's shape."""
    from transformers import AutoConfig

    if family not in ARCHITECTURES:
        raise ValueError(f"model.family={family}: export writes one of {', '.join(ARCHITECTURES)}")
    _check_family(shape, family)
    extra = {"attention_bias": shape.attention_bias == "all"} if family in ("llama", "qwen3") else {}
    if family in ("qwen2", "qwen3"):
        window = shape.sliding_window is not None
        extra.update(use_sliding_window=window, sliding_window=shape.sliding_window, max_window_layers=0,
                     layer_types=["sliding_attention" if window else "full_attention"] * shape.n_layers)
    elif family == "mistral":
        extra["sliding_window"] = shape.sliding_window
    return AutoConfig.for_model(
        family, vocab_size=shape.vocab_size, hidden_size=shape.d_model, intermediate_size=shape.ffn_dim,
        num_hidden_layers=shape.n_layers, num_attention_heads=shape.n_heads, num_key_value_heads=shape.n_kv_heads,
        head_dim=shape.head_dim, max_position_embeddings=shape.max_seq_len, rms_norm_eps=shape.norm_eps,
        rope_parameters=rope_parameters(shape), tie_word_embeddings=shape.tie_embeddings,
        initializer_range=shape.init_std, hidden_act="silu", bos_token_id=bos_token_id, eos_token_id=eos_token_id,
        pad_token_id=pad_token_id, architectures=[ARCHITECTURES[family]], dtype=str(dtype).removeprefix("torch."),
        **extra,
    )


def _check_family(shape: LlamaShape, family: str) -> None:
    """Options a family's transformers class has no place for."""
    fixed = {"qwen2": ("qkv", "Qwen2 always has q/k/v biases and none on o")}
    bias_ok = shape.attention_bias == fixed[family][0] if family in fixed else (
        shape.attention_bias != "qkv" and (family != "mistral" or shape.attention_bias == "none"))
    if not bias_ok:
        raise ValueError(f"model.attention_bias={shape.attention_bias} has no {ARCHITECTURES[family]} equivalent")
    if shape.qk_norm != (family == "qwen3"):
        raise ValueError(f"model.qk_norm={shape.qk_norm}: only qwen3 has (and always has) q/k norms")
    if shape.sliding_window is not None and family == "llama":
        raise ValueError("model.sliding_window: LlamaForCausalLM has no sliding window (use family=mistral)")


def rope_parameters(shape: LlamaShape) -> dict:
    """transformers' `rope_parameters` for the shape's RoPE (type, theta and the scaling's keys)."""
    r = shape.rope_scaling
    params = {"rope_type": "default" if r.kind == "none" else r.kind, "rope_theta": shape.rope_theta}
    if r.kind != "none":
        params["factor"] = r.factor
    if r.kind in ("llama3", "yarn"):
        params["original_max_position_embeddings"] = r.original_max_seq_len
    if r.kind == "llama3":
        params.update(low_freq_factor=r.low_freq_factor, high_freq_factor=r.high_freq_factor)
    if r.kind == "yarn":
        params.update(beta_fast=r.beta_fast, beta_slow=r.beta_slow)
        if r.attention_factor is not None:
            params["attention_factor"] = r.attention_factor
    return params


def family_of(shape: LlamaShape) -> str:
    """The family whose transformers class has the shape's options (for a model without `model.family`)."""
    return "qwen3" if shape.qk_norm else "qwen2" if shape.attention_bias == "qkv" else \
        "mistral" if shape.sliding_window is not None else "llama"


def save_hf_model(model: Llama, out_dir: str | os.PathLike, tokenizer=None, dtype: torch.dtype = torch.float32,
                  family: Optional[str] = None) -> Path:
    """Write `model` (and `tokenizer`, an llmexp Tokenizer) as a transformers folder of `family`
    (None: from the shape): config.json, generation_config.json, model.safetensors, tokenizer files."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    eot = tokenizer.eot_id if tokenizer is not None else None
    config = hf_config(model.shape, family or family_of(model.shape), bos_token_id=eot, eos_token_id=eot, dtype=dtype)
    config.save_pretrained(out)
    from transformers import GenerationConfig

    GenerationConfig(bos_token_id=eot, eos_token_id=eot).save_pretrained(out)
    state = {k: v.detach().to("cpu", dtype) for k, v in model.state_dict().items()}
    save_file(to_hf_state_dict(state, model.shape), str(out / "model.safetensors"), metadata={"format": "pt"})
    if tokenizer is not None:
        save_hf_tokenizer(tokenizer, out, model_max_length=model.shape.max_seq_len)
    return out
