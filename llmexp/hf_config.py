"""A transformers model folder, read without torch: is it one, its config.json, and the llmexp
`model.*` keys it maps to. Core: the init_from pass (llmexp/config/init_from.py) uses it before
anything heavy is imported; weights load in llmexp/models/hf.py, export is llmexp/interop/.
"""
from __future__ import annotations

import glob
import json
import os
from typing import Any, Optional

HF_CONFIG = "config.json"
# transformers architecture -> llmexp model family (decides the architecture an export writes).
# All map onto llmexp's one decoder: the differences are options of the model group.
FAMILIES = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral", "Qwen2ForCausalLM": "qwen2",
            "Qwen3ForCausalLM": "qwen3"}


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
    decoder cannot represent. Pure: the validate pass calls it."""
    arch = (config.get("architectures") or ["?"])[0]
    if arch not in FAMILIES:
        raise ValueError(f"architecture {arch} is not supported (supported: {', '.join(FAMILIES)})")
    family = FAMILIES[arch]
    problems = []
    if config.get("mlp_bias"):
        problems.append("mlp_bias must be false")
    if config.get("hidden_act", "silu") != "silu":
        problems.append(f"hidden_act={config.get('hidden_act')} (llmexp uses silu)")
    rope = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
    rope_kind = rope.get("rope_type", rope.get("type", "default"))
    if rope_kind not in ("default", "linear", "llama3", "yarn"):
        problems.append(f"rope scaling {rope_kind} (llmexp implements default, linear, llama3, yarn)")
    if rope.get("partial_rotary_factor", 1.0) != 1.0 or rope.get("mscale") or rope.get("mscale_all_dim"):
        problems.append(f"rope parameters {rope} (partial rotary / mscale are not implemented)")
    if rope_kind == "yarn" and rope.get("truncate", True) is False:
        problems.append("yarn with truncate=false is not implemented")
    n_heads, d_model = config["num_attention_heads"], config["hidden_size"]
    window = _sliding_window(config, family, problems)
    if problems:
        raise ValueError(f"{arch} config not representable: " + "; ".join(problems))
    rope_theta = config.get("rope_theta", rope.get("rope_theta", 10000.0))  # transformers 5: in rope_parameters
    max_seq_len = config["max_position_embeddings"]
    # Qwen2 always has q/k/v biases; Llama and Qwen3's attention_bias puts one on q, k, v and o.
    bias = "qkv" if family == "qwen2" else "all" if config.get("attention_bias") else "none"
    return {
        "name": f"hf-{arch}",
        "family": family,
        "n_layers": config["num_hidden_layers"],
        "d_model": d_model,
        "n_heads": n_heads,
        "n_kv_heads": config.get("num_key_value_heads") or n_heads,
        "head_dim": config.get("head_dim") or d_model // n_heads,
        "ffn_dim": config["intermediate_size"],
        "max_seq_len": max_seq_len,
        "rope_theta": float(rope_theta),
        "norm_eps": float(config.get("rms_norm_eps", 1e-6)),
        "tie_embeddings": bool(config.get("tie_word_embeddings", False)),
        "vocab_size": config["vocab_size"],
        "attention_bias": bias,
        "qk_norm": family == "qwen3",
        "sliding_window": window,
        **_rope_fields(rope_kind, rope, max_seq_len),
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


def _sliding_window(config: dict[str, Any], family: str, problems: list[str]) -> Optional[int]:
    """The window every layer uses, or None. Qwen's per-layer windows (use_sliding_window with
    max_window_layers) would need per-layer attention kinds: refused."""
    window = config.get("sliding_window")
    if family in ("qwen2", "qwen3"):
        kinds = set(config.get("layer_types") or ["full_attention"])
        if not config.get("use_sliding_window") and kinds == {"full_attention"}:
            return None
        if kinds != {"sliding_attention"}:
            problems.append(f"layer_types {sorted(kinds)} mix sliding and full attention (llmexp: one kind for all layers)")
        return window
    if family == "llama":
        return None
    return window if window is not None and window < config.get("max_position_embeddings", 0) else None


def _rope_fields(kind: str, rope: dict[str, Any], max_seq_len: int) -> dict[str, Any]:
    if kind == "default":
        return {}
    fields = {"rope_scaling": kind, "rope_factor": float(rope.get("factor", 1.0))}
    if kind in ("llama3", "yarn"):
        fields["rope_original_max_seq_len"] = int(rope.get("original_max_position_embeddings") or max_seq_len)
    if kind == "llama3":
        fields["rope_low_freq_factor"] = float(rope["low_freq_factor"])
        fields["rope_high_freq_factor"] = float(rope["high_freq_factor"])
    if kind == "yarn":
        fields["rope_beta_fast"] = float(rope.get("beta_fast") or 32.0)
        fields["rope_beta_slow"] = float(rope.get("beta_slow") or 1.0)
        if rope.get("attention_factor") is not None:
            fields["rope_attention_factor"] = float(rope["attention_factor"])
    return fields
