"""A Llama-style decoder: RMSNorm, rotary embeddings, grouped-query attention, SwiGLU.

Plain PyTorch and nothing else: parallelism, activation checkpointing and compilation are
applied from outside (llmexp/parallel/), the loss and batch format belong to the stages.
Weight names follow Meta's Llama layout (tok_embeddings, layers.N.attention.wq, ...).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


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

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in fp32 whatever the autocast dtype: low-precision rsqrt loses accuracy.
        return F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).type_as(x) * self.weight


def rope_tables(head_dim: int, max_seq_len: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables for rotary embeddings in the half-split layout (as in HF Llama)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(max_seq_len, dtype=torch.float32), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return (x * cos + rotated * sin).type_as(x)


class Attention(nn.Module):
    def __init__(self, shape: LlamaShape):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = shape.n_heads, shape.n_kv_heads, shape.head_dim
        self.wq = nn.Linear(shape.d_model, shape.n_heads * shape.head_dim, bias=False)
        self.wk = nn.Linear(shape.d_model, shape.n_kv_heads * shape.head_dim, bias=False)
        self.wv = nn.Linear(shape.d_model, shape.n_kv_heads * shape.head_dim, bias=False)
        self.wo = nn.Linear(shape.n_heads * shape.head_dim, shape.d_model, bias=False)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: Optional[torch.Tensor] = None,
        cache: Optional[tuple[torch.Tensor, torch.Tensor, int]] = None,
    ) -> torch.Tensor:
        b, t, _ = x.shape
        q = self.wq(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.wk(x).view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.wv(x).view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:  # append to this layer's cache, attend over everything so far
            cache_k, cache_v, start = cache
            cache_k[:, :, start : start + t] = k
            cache_v[:, :, start : start + t] = v
            k, v = cache_k[:, :, : start + t], cache_v[:, :, : start + t]
        gqa = self.n_kv_heads != self.n_heads
        if mask is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)
        return self.wo(out.transpose(1, 2).reshape(b, t, -1))


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
        cos, sin = rope_tables(shape.head_dim, shape.max_seq_len, shape.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Normal(0, init_std); output projections of each block scaled by 1/sqrt(2 * n_layers)
        (GPT-2) so the residual stream's variance does not grow with depth."""
        std = self.shape.init_std
        for name, p in self.named_parameters():
            if p.dim() == 1:
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
