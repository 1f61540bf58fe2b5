"""A Llama-style decoder: RMSNorm, rotary embeddings, grouped-query attention, SwiGLU.

The options of today's open families are fields of the shape: q/k/v biases (Qwen2), per-head
q/k RMSNorm (Qwen3), a head width decoupled from d_model / n_heads (Qwen3), scaled RoPE
(Llama-3.1 `llama3`, linear, YaRN: rope.py), a sliding attention window (Mistral v0.1) and
tied embeddings. Every operation follows transformers' order so fp32 logits agree bit for bit.

Plain PyTorch and nothing else: parallelism, activation checkpointing and compilation are
applied from outside (llmexp/parallel/; the tensor-parallel plan below is data it reads), the
loss and batch format belong to the stages. Attention reshapes with -1 heads, so a rank
holding a share of wq/wk/wv runs its share of the heads unchanged.
Weight names follow Meta's Llama layout (tok_embeddings, layers.N.attention.wq, ...).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from llmexp.models.rope import RopeScaling, apply_rope, rope_tables
from llmexp.models.tp_plan import Colwise, Gather, Plan, Rowwise, Sequence, prefixed


@dataclass
class KVCache:
    """Keys and values of every layer for incremental decoding: (layers, batch, kv_heads,
    capacity, head_dim). `length` positions are filled."""

    k: torch.Tensor
    v: torch.Tensor
    length: int = 0

    @classmethod
    def empty(cls, shape: "LlamaShape", batch: int, capacity: int, device=None, dtype=torch.float32) -> "KVCache":
        size = (shape.n_layers, batch, shape.n_kv_heads, capacity, shape.head_dim)
        return cls(torch.zeros(size, device=device, dtype=dtype), torch.zeros(size, device=device, dtype=dtype))


@dataclass(frozen=True)
class LlamaShape:
    vocab_size: int
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    ffn_dim: int
    max_seq_len: int
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = False
    init_std: float = 0.02
    head_dim: Optional[int] = None  # None: d_model // n_heads
    attention_bias: str = "none"  # none | qkv (Qwen2) | all (q, k, v and o)
    qk_norm: bool = False  # RMSNorm over each head's queries and keys before RoPE (Qwen3)
    sliding_window: Optional[int] = None  # a token attends to itself and the window - 1 before it
    rope_scaling: RopeScaling = RopeScaling()

    def __post_init__(self):
        if self.head_dim is None:
            object.__setattr__(self, "head_dim", self.d_model // self.n_heads)


def shape_from_fields(model: Mapping[str, Any], vocab_size: int) -> LlamaShape:
    """The shape for the model group's keys (`model.*`, a dict or the config dataclass)."""
    get = model.get if isinstance(model, Mapping) else lambda key, default=None: getattr(model, key, default)
    rope = RopeScaling(
        kind=get("rope_scaling", "none"), factor=get("rope_factor", 1.0),
        original_max_seq_len=get("rope_original_max_seq_len"), low_freq_factor=get("rope_low_freq_factor", 1.0),
        high_freq_factor=get("rope_high_freq_factor", 4.0), beta_fast=get("rope_beta_fast", 32.0),
        beta_slow=get("rope_beta_slow", 1.0), attention_factor=get("rope_attention_factor"),
    )
    return LlamaShape(
        vocab_size=vocab_size, n_layers=get("n_layers"), d_model=get("d_model"), n_heads=get("n_heads"),
        n_kv_heads=get("n_kv_heads") or get("n_heads"), ffn_dim=get("ffn_dim"), max_seq_len=get("max_seq_len"),
        rope_theta=get("rope_theta", 10000.0), norm_eps=get("norm_eps", 1e-5),
        tie_embeddings=get("tie_embeddings", False), init_std=get("init_std", 0.02), head_dim=get("head_dim"),
        attention_bias=get("attention_bias", "none"), qk_norm=get("qk_norm", False),
        sliding_window=get("sliding_window"), rope_scaling=rope,
    )


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in fp32 whatever the autocast dtype: low-precision rsqrt loses accuracy.
        return F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).type_as(x) * self.weight


class Attention(nn.Module):
    def __init__(self, shape: LlamaShape):
        super().__init__()
        self.head_dim = shape.head_dim
        self.window = shape.sliding_window
        qkv_bias = shape.attention_bias != "none"
        self.wq = nn.Linear(shape.d_model, shape.n_heads * shape.head_dim, bias=qkv_bias)
        self.wk = nn.Linear(shape.d_model, shape.n_kv_heads * shape.head_dim, bias=qkv_bias)
        self.wv = nn.Linear(shape.d_model, shape.n_kv_heads * shape.head_dim, bias=qkv_bias)
        self.wo = nn.Linear(shape.n_heads * shape.head_dim, shape.d_model, bias=shape.attention_bias == "all")
        if shape.qk_norm:
            self.q_norm = RMSNorm(shape.head_dim, shape.norm_eps)
            self.k_norm = RMSNorm(shape.head_dim, shape.norm_eps)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: Optional[torch.Tensor] = None,
        cache: Optional[tuple[torch.Tensor, torch.Tensor, int]] = None,
    ) -> torch.Tensor:
        b, t, _ = x.shape
        # -1 heads: all of them, or this rank's share under tensor parallelism.
        q = self.wq(x).view(b, t, -1, self.head_dim)
        k = self.wk(x).view(b, t, -1, self.head_dim)
        if hasattr(self, "q_norm"):
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        v = self.wv(x).view(b, t, -1, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:  # append to this layer's cache, attend over everything so far
            cache_k, cache_v, start = cache
            cache_k[:, :, start : start + t] = k
            cache_v[:, :, start : start + t] = v
            k, v = cache_k[:, :, : start + t], cache_v[:, :, : start + t]
        gqa = k.shape[1] != q.shape[1]  # sdpa repeats each KV head over its q.shape[1] / k.shape[1] queries
        if self.window is not None and self.window < k.shape[2]:
            mask = self._windowed(mask, q.shape[2], k.shape[2], q.device)
        # scale given explicitly, as transformers does: sdpa's own 1/sqrt(d) may round differently
        scale = self.head_dim ** -0.5
        if mask is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=t > 1, enable_gqa=gqa, scale=scale)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa, scale=scale)
        return self.wo(out.transpose(1, 2).reshape(b, t, -1))

    def _windowed(self, mask: Optional[torch.Tensor], t: int, keys: int, device) -> torch.Tensor:
        """`mask` (or plain causality) restricted to the last `window` keys of each query; the
        queries are the last `t` of `keys` positions (a cache holds the earlier ones)."""
        query = torch.arange(keys - t, keys, device=device)[:, None]
        key = torch.arange(keys, device=device)[None, :]
        window = (key <= query) & (key > query - self.window)
        return window if mask is None else mask & window


class FeedForward(nn.Module):
    def __init__(self, shape: LlamaShape):
        super().__init__()
        self.w1 = nn.Linear(shape.d_model, shape.ffn_dim, bias=False)  # gate
        self.w3 = nn.Linear(shape.d_model, shape.ffn_dim, bias=False)  # up
        self.w2 = nn.Linear(shape.ffn_dim, shape.d_model, bias=False)  # down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    def __init__(self, shape: LlamaShape):
        super().__init__()
        self.attention_norm = RMSNorm(shape.d_model, shape.norm_eps)
        self.attention = Attention(shape)
        self.ffn_norm = RMSNorm(shape.d_model, shape.norm_eps)
        self.feed_forward = FeedForward(shape)

    def forward(self, x, cos, sin, mask=None, cache=None):
        x = x + self.attention(self.attention_norm(x), cos, sin, mask, cache)
        return x + self.feed_forward(self.ffn_norm(x))


class Llama(nn.Module):
    def __init__(self, shape: LlamaShape):
        super().__init__()
        self.shape = shape
        self.tok_embeddings = nn.Embedding(shape.vocab_size, shape.d_model)
        self.layers = nn.ModuleList(Block(shape) for _ in range(shape.n_layers))
        self.norm = RMSNorm(shape.d_model, shape.norm_eps)
        self.output = nn.Linear(shape.d_model, shape.vocab_size, bias=False)
        if shape.tie_embeddings:
            self.output.weight = self.tok_embeddings.weight
        cos, sin = rope_tables(shape.head_dim, shape.max_seq_len, shape.rope_theta, shape.rope_scaling)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    def tensor_parallel_plan(self) -> Plan:
        return tensor_parallel_plan(self.shape)

    def reset_parameters(self) -> None:
        """Normal(0, init_std); output projections of each block scaled by 1/sqrt(2 * n_layers)
        (GPT-2) so the residual stream's variance does not grow with depth."""
        std = self.shape.init_std
        for name, p in self.named_parameters():
            if name.endswith(".bias"):
                nn.init.zeros_(p)
            elif p.dim() == 1:
                nn.init.ones_(p)
            elif name.endswith(("wo.weight", "w2.weight")):
                nn.init.normal_(p, 0.0, std / math.sqrt(2 * self.shape.n_layers))
            else:
                nn.init.normal_(p, 0.0, std)

    def forward(
        self,
        tokens: torch.Tensor,
        positions: Optional[torch.Tensor] = None,
        mask: Optional[torch.Tensor] = None,
        cache: Optional[KVCache] = None,
    ) -> torch.Tensor:
        """Logits for `tokens` (batch, seq). `positions` (batch, seq) restarts RoPE per packed
        document; `mask` (batch, 1, seq, keys) bool restricts attention (keys = seq, or the
        cache's length + seq); with `cache`, keys and values are appended to it."""
        return self.output(self.hidden_states(tokens, positions, mask, cache))

    def hidden_states(
        self,
        tokens: torch.Tensor,
        positions: Optional[torch.Tensor] = None,
        mask: Optional[torch.Tensor] = None,
        cache: Optional[KVCache] = None,
    ) -> torch.Tensor:
        """The final normalised hidden states (batch, seq, d_model), before the output
        projection: what value and reward heads read."""
        t = tokens.shape[1]
        start = cache.length if cache is not None else 0
        if positions is None:
            cos, sin = self.rope_cos[start : start + t], self.rope_sin[start : start + t]
        else:
            cos, sin = self.rope_cos[positions].unsqueeze(1), self.rope_sin[positions].unsqueeze(1)
        if cache is not None and mask is None and start > 0:
            # Tokens after a filled cache: causal among themselves, full view of the past.
            mask = torch.ones(t, start + t, dtype=torch.bool, device=tokens.device).tril(start)
        x = self.tok_embeddings(tokens)
        for i, layer in enumerate(self.layers):
            layer_cache = (cache.k[i], cache.v[i], start) if cache is not None else None
            x = layer(x, cos, sin, mask, layer_cache)
        if cache is not None:
            cache.length = start + t
        return self.norm(x)


def tensor_parallel_plan(shape: LlamaShape) -> Plan:
    """Megatron-style with sequence parallelism (torchtitan's Llama plan): wq/wk/wv and w1/w3
    split by output columns (heads, ffn columns), wo and w2 by input rows and reduce-scattered
    back along the sequence; norms and the residual stream split along the sequence; the
    embedding split by vocabulary, the output projection by vocabulary with the logits gathered
    whole for the loss. Biases (Qwen2) go with their columns; wo's is added once after the
    reduce. q/k norms (Qwen3) act per head on this rank's heads, weights replicated."""
    block: Plan = {
        "attention_norm": Sequence(),
        # Block passes (x, cos, sin, mask, cache) positionally: only x is gathered.
        "attention": Gather("sequence", "replicate", arity=5),
        "attention.wq": Colwise(),
        "attention.wk": Colwise(),
        "attention.wv": Colwise(),
        "attention.wo": Rowwise(output="sequence"),
        "ffn_norm": Sequence(),
        "feed_forward": Gather("sequence", "replicate"),
        "feed_forward.w1": Colwise(),
        "feed_forward.w3": Colwise(),
        "feed_forward.w2": Rowwise(output="sequence"),
    }
    if shape.qk_norm:
        block.update({f"attention.{n}": Sequence(over="heads", local=True) for n in ("q_norm", "k_norm")})
    return {
        "tok_embeddings": Rowwise(input="replicate", output="sequence"),
        **prefixed(block, "layers.*"),
        "norm": Sequence(),
        "output": Colwise(input="sequence", output="replicate"),
    }
