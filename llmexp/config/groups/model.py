"""model group: a Llama-style decoder. Presets under conf/model/ use published shapes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from omegaconf import MISSING

from llmexp.config.checks import positive, require


@dataclass
class ModelConfig:
    name: str = MISSING
    n_layers: int = MISSING
    d_model: int = MISSING
    n_heads: int = MISSING
    n_kv_heads: Optional[int] = None  # None: multi-head attention (n_kv_heads = n_heads)
    ffn_dim: int = MISSING  # hidden width of the SwiGLU MLP
    max_seq_len: int = MISSING  # context length the preset was designed for
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = False
    vocab_size: Optional[int] = None  # None: taken from the tokenizer
    init_std: float = 0.02


def check_model(m: ModelConfig) -> None:
    for key in ("n_layers", "d_model", "n_heads", "ffn_dim", "max_seq_len"):
        positive(f"model.{key}", getattr(m, key))
    positive("model.rope_theta", m.rope_theta)
    positive("model.norm_eps", m.norm_eps)
    positive("model.init_std", m.init_std)
    require(m.init_std < 1.0, "model.init_std", m.init_std, "must be < 1 (weights of that size diverge at once)")
    require(m.d_model % m.n_heads == 0, "model.n_heads", m.n_heads, f"must divide model.d_model={m.d_model}")
    head_dim = m.d_model // m.n_heads
    require(head_dim % 2 == 0, "model.n_heads", m.n_heads, f"head dim d_model/n_heads={head_dim} must be even for RoPE")
    if m.n_kv_heads is not None:
        positive("model.n_kv_heads", m.n_kv_heads)
        require(m.n_heads % m.n_kv_heads == 0, "model.n_kv_heads", m.n_kv_heads, f"must divide model.n_heads={m.n_heads}")
