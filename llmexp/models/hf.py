"""llmexp Llama <-> transformers Llama/Mistral/Qwen2/Qwen3 weights: names, shapes, loading a folder.

The four families share transformers' module names; llmexp's RoPE is the half-split layout of
HF Llama, so q/k weights copy across unpermuted and fp32 logits agree bit for bit. Weights are read with safetensors only: an imported folder is
never unpickled and no remote code runs. Writing a folder (export) is llmexp/interop/hf.py.
"""
from __future__ import annotations

import glob
import os
from dataclasses import replace
from typing import Any, Optional

import torch
from safetensors.torch import load_file

from llmexp.hf_config import hf_model_fields, read_hf_config
from llmexp.models.llama import Llama, LlamaShape, shape_from_fields
from llmexp.models.rope import rope_tables

# llmexp name inside a block -> transformers name inside `model.layers.N.`
_BLOCK = {
    "attention.wq": "self_attn.q_proj",
    "attention.wk": "self_attn.k_proj",
    "attention.wv": "self_attn.v_proj",
    "attention.wo": "self_attn.o_proj",
    "feed_forward.w1": "mlp.gate_proj",
    "feed_forward.w3": "mlp.up_proj",
    "feed_forward.w2": "mlp.down_proj",
    "attention_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attention.q_norm": "self_attn.q_norm",
    "attention.k_norm": "self_attn.k_norm",
}
_TOP = {"tok_embeddings": "model.embed_tokens", "norm": "model.norm", "output": "lm_head"}


def hf_module_name(target: str) -> str:
    """transformers' name of a block Linear llmexp calls `target` (wq -> q_proj, w1 -> gate_proj)."""
    return next(hf for ours, hf in _BLOCK.items() if ours.split(".")[-1] == target).split(".")[-1]


def hf_name(name: str) -> str:
    module, _, param = name.rpartition(".")
    if module in _TOP:
        return f"{_TOP[module]}.{param}"
    _, index, inner = module.split(".", 2)  # layers.N.<inner>
    return f"model.layers.{index}.{_BLOCK[inner]}.{param}"


def to_hf_state_dict(state: dict[str, torch.Tensor], shape: LlamaShape) -> dict[str, torch.Tensor]:
    """llmexp weights under transformers' names; a tied output projection is stored once."""
    out = {hf_name(k): v for k, v in state.items() if not (shape.tie_embeddings and k == "output.weight")}
    return {k: v.contiguous() for k, v in out.items()}


def from_hf_state_dict(state: dict[str, torch.Tensor], shape: LlamaShape) -> dict[str, torch.Tensor]:
    """transformers weights under llmexp's names (the exact inverse of `to_hf_state_dict`)."""
    names = {hf_name(k): k for k in _param_names(shape)}
    out, unknown = {}, []
    for k, v in state.items():
        if k in names:
            out[names[k]] = v
        elif not k.endswith("rotary_emb.inv_freq"):  # old transformers saved RoPE buffers
            unknown.append(k)
    if unknown:
        raise ValueError(f"weights llmexp's Llama has no place for: {', '.join(unknown[:5])}")
    if shape.tie_embeddings:
        out["output.weight"] = out["tok_embeddings.weight"]
    return out


def _param_names(shape: LlamaShape) -> list[str]:
    """Every weight name of an llmexp Llama of `shape`, without building one."""
    names = ["tok_embeddings.weight", "norm.weight", "output.weight"]
    inner = [k for k in _BLOCK if shape.qk_norm or k not in ("attention.q_norm", "attention.k_norm")]
    biased = {"none": [], "qkv": ["wq", "wk", "wv"], "all": ["wq", "wk", "wv", "wo"]}[shape.attention_bias]
    for i in range(shape.n_layers):
        names += [f"layers.{i}.{k}.weight" for k in inner]
        names += [f"layers.{i}.attention.{k}.bias" for k in biased]
    return names


def shape_from_hf_config(config: dict[str, Any]) -> LlamaShape:
    fields = {**hf_model_fields(config), "init_std": config.get("initializer_range", 0.02)}
    return shape_from_fields(fields, fields["vocab_size"])


def load_hf_state_dict(folder: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Every *.safetensors shard of `folder`; safetensors only, nothing is unpickled."""
    files = sorted(glob.glob(os.path.join(glob.escape(os.path.expanduser(str(folder))), "*.safetensors")))
    if not files:
        raise FileNotFoundError(f"no *.safetensors in {folder} (pickled .bin weights are not loaded, by design)")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(f, device="cpu"))
    return state


def load_hf_weights(model: Llama, folder: str | os.PathLike) -> None:
    """Load a transformers Llama-family folder's weights into `model` (shapes must agree)."""
    expected = shape_from_hf_config(read_hf_config(folder))
    if replace(expected, init_std=model.shape.init_std, max_seq_len=model.shape.max_seq_len) != model.shape:
        raise ValueError(f"{folder} holds a model of shape {expected}, but the model to load into is {model.shape}")
    state = from_hf_state_dict(load_hf_state_dict(folder), model.shape)
    model.load_state_dict({k: v.to(model.tok_embeddings.weight.dtype) for k, v in state.items()}, strict=True)


def load_hf_model(folder: str | os.PathLike, max_seq_len: Optional[int] = None) -> Llama:
    """An llmexp Llama with the shape and weights of a transformers folder. `max_seq_len`
    shortens the RoPE tables of long-context models (the weights do not depend on it)."""
    shape = shape_from_hf_config(read_hf_config(folder))
    if max_seq_len is not None:
        shape = replace(shape, max_seq_len=max_seq_len)
    with torch.device("meta"):
        model = Llama(shape)
    model = model.to_empty(device="cpu")
    # RoPE tables are non-persistent buffers: recompute them after leaving the meta device.
    model.rope_cos, model.rope_sin = rope_tables(shape.head_dim, shape.max_seq_len, shape.rope_theta, shape.rope_scaling)
    state = from_hf_state_dict(load_hf_state_dict(folder), shape)
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True, assign=True)
    if shape.tie_embeddings:
        model.output.weight = model.tok_embeddings.weight
    return model
