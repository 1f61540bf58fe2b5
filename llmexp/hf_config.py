"""A transformers model folder, read without torch: is it one, its config.json, and the llmexp
`model.*` keys it maps to. Core: the init_from pass (llmexp/config/init_from.py) uses it before
anything heavy is imported; weights load in llmexp/models/hf.py, export is llmexp/interop/.
"""
from __future__ import annotations

import glob
import json
import os
from typing import Any

HF_CONFIG = "config.json"
# Architectures whose checkpoints map one to one onto llmexp's Llama (bias-free, SwiGLU,
# RMSNorm, half-split RoPE). Qwen2 has q/k/v biases: rejected with a message, see hf.py.
SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM")


def is_hf_folder(path: str | os.PathLike) -> bool:
    """A transformers model folder: config.json plus safetensors weights."""
    path = os.path.expanduser(str(path))
    return (
        os.path.isfile(os.path.join(path, HF_CONFIG))
        and bool(glob.glob(os.path.join(glob.escape(path), "*.safetensors")))
    )


def read_hf_config(path: str | os.PathLike) -> dict[str, Any]:
    with open(os.path.join(os.path.expanduser(str(path)), HF_CONFIG)) as f:
        return json.load(f)


def hf_model_fields(config: dict[str, Any]) -> dict[str, Any]:
    """llmexp `model.*` keys for a transformers config.json, or ValueError saying what llmexp's
    Llama cannot represent. Pure: the validate pass calls it."""
    arch = (config.get("architectures") or ["?"])[0]
    if arch == "Qwen2ForCausalLM" or config.get("model_type") == "qwen2":
        raise ValueError("Qwen2 checkpoints have q/k/v projection biases, which llmexp's bias-free Llama does not "
                         "have; convert the weights to a bias-free LlamaForCausalLM first")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ValueError(f"architecture {arch} is not supported (supported: {', '.join(SUPPORTED_ARCHITECTURES)})")
    problems = []
    if config.get("attention_bias") or config.get("mlp_bias"):
        problems.append("attention_bias/mlp_bias must be false")
    if config.get("hidden_act", "silu") != "silu":
        problems.append(f"hidden_act={config.get('hidden_act')} (llmexp uses silu)")
    rope = config.get("rope_scaling") or config.get("rope_parameters") or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        problems.append(f"rope scaling {rope} (llmexp implements plain RoPE)")
    n_heads, d_model = config["num_attention_heads"], config["hidden_size"]
    head_dim = config.get("head_dim") or d_model // n_heads
    if head_dim * n_heads != d_model:
        problems.append(f"head_dim={head_dim} x heads={n_heads} != hidden_size={d_model}")
    window = config.get("sliding_window")
    if window is not None and window < config.get("max_position_embeddings", 0):
        problems.append(f"sliding_window={window} (llmexp attends over the whole context)")
    if problems:
        raise ValueError(f"{arch} config not representable: " + "; ".join(problems))
    rope_theta = config.get("rope_theta")
    if rope_theta is None:  # transformers 5 writes it inside rope_parameters
        rope_theta = (config.get("rope_parameters") or {}).get("rope_theta", 10000.0)
    return {
        "name": f"hf-{arch}",
        "n_layers": config["num_hidden_layers"],
        "d_model": d_model,
        "n_heads": n_heads,
        "n_kv_heads": config.get("num_key_value_heads") or n_heads,
        "ffn_dim": config["intermediate_size"],
        "max_seq_len": config["max_position_embeddings"],
        "rope_theta": float(rope_theta),
        "norm_eps": float(config.get("rms_norm_eps", 1e-6)),
        "tie_embeddings": bool(config.get("tie_word_embeddings", False)),
        "vocab_size": config["vocab_size"],
    }


def hf_tokenizer_problem(folder: str | os.PathLike) -> str | None:
    """Why llmexp cannot convert `folder`'s tokenizer (None: it can try), from tokenizer.json
    alone: validation refuses these before any run starts; the conversion itself
    (llmexp/tokenizers/hf.py) checks the rest, ids included."""
    path = os.path.join(os.path.expanduser(str(folder)), "tokenizer.json")
    if not os.path.isfile(path):
        return f"{folder} has no tokenizer.json (llmexp reads fast byte-level BPE tokenizers only)"
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except (OSError, ValueError) as err:
        return f"{path} is not readable JSON ({err})"
    kind = (data.get("model") or {}).get("type")
    if kind != "BPE":
        return f"{path}: a {kind} tokenizer; llmexp converts byte-level BPE only"
    if data.get("normalizer") is not None:
        return f"{path}: has a normalizer, which tiktoken cannot apply"
    return None
