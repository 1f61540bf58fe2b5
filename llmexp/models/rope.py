"""Rotary position embeddings: frequencies (plain, or scaled for long context) and cos/sin tables.

The scaled variants are the published ones: linear position interpolation, Llama-3.1's
`llama3` (wavelength-dependent interpolation) and YaRN. Each formula is written operation for
operation as in transformers' modeling_rope_utils, so the tables, and with them the logits of
an imported checkpoint, agree bit for bit in fp32.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

ROPE_SCALINGS = ("none", "linear", "llama3", "yarn")


@dataclass(frozen=True)
class RopeScaling:
    kind: str = "none"  # none | linear | llama3 | yarn
    factor: float = 1.0  # context extension factor
    original_max_seq_len: Optional[int] = None  # llama3, yarn: the pre-training context
    low_freq_factor: float = 1.0  # llama3
    high_freq_factor: float = 4.0  # llama3
    beta_fast: float = 32.0  # yarn: rotations below which dimensions are interpolated...
    beta_slow: float = 1.0  # ...and above which they are kept (extrapolated)
    attention_factor: Optional[float] = None  # yarn: cos/sin scale; None: 0.1 ln(factor) + 1


def inverse_frequencies(head_dim: int, theta: float, scaling: RopeScaling = RopeScaling()) -> tuple[torch.Tensor, float]:
    """(inv_freq of head_dim / 2 rotation pairs, factor on cos/sin)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    if scaling.kind == "none":
        return inv_freq, 1.0
    if scaling.kind == "linear":
        return inv_freq / scaling.factor, 1.0
    if scaling.kind == "llama3":
        return _llama3(inv_freq, scaling), 1.0
    if scaling.kind == "yarn":
        return _yarn(head_dim, theta, scaling)
    raise ValueError(f"rope scaling {scaling.kind!r}: one of {', '.join(ROPE_SCALINGS)}")


def _llama3(inv_freq: torch.Tensor, s: RopeScaling) -> torch.Tensor:
    """Low frequencies divided by `factor`, high ones kept, a smooth blend in between."""
    low_freq_wavelen = s.original_max_seq_len / s.low_freq_factor
    high_freq_wavelen = s.original_max_seq_len / s.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / s.factor, inv_freq)
    smooth = (s.original_max_seq_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor)
    smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled
    is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium, smoothed, scaled)


def _yarn(head_dim: int, theta: float, s: RopeScaling) -> tuple[torch.Tensor, float]:
    """NTK-by-parts interpolation (Peng et al. 2023) with its attention temperature."""
    attention = s.attention_factor if s.attention_factor is not None else (
        0.1 * math.log(s.factor) + 1.0 if s.factor > 1 else 1.0)

    def correction_dim(rotations: float) -> float:
        return (head_dim * math.log(s.original_max_seq_len / (rotations * 2 * math.pi))) / (2 * math.log(theta))

    low = max(math.floor(correction_dim(s.beta_fast)), 0)
    high = min(math.ceil(correction_dim(s.beta_slow)), head_dim - 1)
    if low == high:
        high += 0.001  # as in the reference: avoids a zero-width ramp
    ramp = torch.clamp((torch.arange(head_dim // 2, dtype=torch.float32) - low) / (high - low), 0, 1)
    pos_freqs = theta ** (torch.arange(0, head_dim, 2).float() / head_dim)
    extrapolation = 1 - ramp
    inv_freq = (1.0 / (s.factor * pos_freqs)) * (1 - extrapolation) + (1.0 / pos_freqs) * extrapolation
    return inv_freq, attention


def rope_tables(head_dim: int, max_seq_len: int, theta: float,
                scaling: RopeScaling = RopeScaling()) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables (max_seq_len, head_dim) in the half-split layout of HF Llama."""
    inv_freq, attention = inverse_frequencies(head_dim, theta, scaling)
    angles = torch.arange(max_seq_len, dtype=torch.float32)[:, None] * inv_freq
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos() * attention, angles.sin() * attention


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    # HF's rotate_half negates x's second half; the sign is moved onto sin's first half instead
    # (a (seq, head_dim) table, not (batch, heads, seq, head_dim) activations): -a*b == a*(-b)
    # exactly in IEEE arithmetic, so the result is bit-identical and one full-size op (and its
    # backward) per q and k is saved (aten::neg was ~1.4% of an eager fp32 step in the profile).
    rotated = torch.cat([x[..., half:], x[..., :half]], dim=-1)
    signed_sin = torch.cat([-sin[..., :half], sin[..., half:]], dim=-1)
    return (x * cos + rotated * signed_sin).type_as(x)
