"""model group: a Llama-style decoder. Presets under conf/model/ use published shapes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from omegaconf import MISSING

from llmexp.config.checks import choice, positive, require


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
    # Options of today's open families (docs/models.md); defaults are plain Llama-2.
    # the transformers architecture an export writes
    family: str = choice(Literal["llama", "mistral", "qwen2", "qwen3"], "llama")
    head_dim: Optional[int] = None  # None: d_model // n_heads (Qwen3 decouples it)
    # none | qkv (Qwen2) | all (q, k, v and o: Llama/Qwen3 attention_bias)
    attention_bias: str = choice(Literal["none", "qkv", "all"], "none")
    qk_norm: bool = False  # RMSNorm over each head's queries and keys before RoPE (Qwen3)
    sliding_window: Optional[int] = None  # each token attends to the last this-many positions (Mistral v0.1)
    # none | linear | llama3 (Llama-3.1+) | yarn
    rope_scaling: str = choice(Literal["none", "linear", "llama3", "yarn"], "none")
    rope_factor: float = 1.0  # context extension factor of the scaling
    rope_original_max_seq_len: Optional[int] = None  # llama3, yarn: the pre-training context length
    rope_low_freq_factor: float = 1.0  # llama3
    rope_high_freq_factor: float = 4.0  # llama3
    rope_beta_fast: float = 32.0  # yarn
    rope_beta_slow: float = 1.0  # yarn
    rope_attention_factor: Optional[float] = None  # yarn: cos/sin scale (None: 0.1 ln(factor) + 1)


def check_model(m: ModelConfig) -> None:
    for key in ("n_layers", "d_model", "n_heads", "ffn_dim", "max_seq_len"):
        positive(f"model.{key}", getattr(m, key))
    positive("model.rope_theta", m.rope_theta)
    positive("model.norm_eps", m.norm_eps)
    positive("model.init_std", m.init_std)
    require(m.init_std < 1.0, "model.init_std", m.init_std, "must be < 1 (weights of that size diverge at once)")
    if m.head_dim is None:
        require(m.d_model % m.n_heads == 0, "model.n_heads", m.n_heads, f"must divide model.d_model={m.d_model}")
        head_dim = m.d_model // m.n_heads
        require(head_dim % 2 == 0, "model.n_heads", m.n_heads, f"head dim d_model/n_heads={head_dim} must be even for RoPE")
    else:
        require(m.head_dim > 0 and m.head_dim % 2 == 0, "model.head_dim", m.head_dim, "an even number > 0 (RoPE pairs)")
    positive("model.sliding_window", m.sliding_window, optional=True)
    if m.rope_scaling != "none":
        require(m.rope_factor >= 1.0, "model.rope_factor", m.rope_factor, f"rope_scaling={m.rope_scaling} needs a factor >= 1")
    if m.rope_scaling in ("llama3", "yarn"):
        positive("model.rope_original_max_seq_len", m.rope_original_max_seq_len)
    if m.rope_scaling == "llama3":
        require(m.rope_high_freq_factor > m.rope_low_freq_factor > 0, "model.rope_high_freq_factor",
                m.rope_high_freq_factor, f"must exceed model.rope_low_freq_factor={m.rope_low_freq_factor} > 0")
    if m.n_kv_heads is not None:
        positive("model.n_kv_heads", m.n_kv_heads)
        require(m.n_heads % m.n_kv_heads == 0, "model.n_kv_heads", m.n_kv_heads, f"must divide model.n_heads={m.n_heads}")
