"""Concrete model shapes for a target parameter count, from one consistent family.

A family fixes the head width, the depth-to-width ratio (d_model / n_layers), the GQA group,
the SwiGLU width rule (8/3 d rounded up, as Llama) and embedding tying. Head counts are 1, 2, 4
or a multiple of 8, so every tensor-parallel degree up to 8 divides them (and the KV heads,
which divide the heads); widths are head_dim x such a count. For a target N every width is tried
with the depths whose aspect ratio stays within a factor sqrt(2) of the family's and inside the
published range ASPECT_RANGE; the shape whose exact N (llmexp.plan.count_params) is nearest the
target in log space wins, the family's own aspect ratio breaking near-ties.

The production families (gpt, llama) use 64- and 128-wide heads. The CPU families (tiny, micro)
are for models of 10^4..10^8 parameters whose widths (32..512) cannot hold 8 heads of 64: they
keep narrower heads (32, 16) and the same head-count rule, and refuse targets above max_params.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from omegaconf import OmegaConf

from llmexp.config.schema import ModelConfig
from llmexp.plan import ParamCount, count_params, flops_per_token
from llmexp.scaling.errors import ScalingError

ASPECT_BAND = math.sqrt(2.0)
# d_model / n_layers of published dense models: GPT-3 Medium 43 (1024/24) .. Gopher 280B 205
# (16384/80); Kaplan et al. 2020 (fig. 5) find the loss within a few % over ~20..200.
ASPECT_RANGE = (20.0, 210.0)
HEAD_MULTIPLE = 8  # head counts above the small ones (1, 2, 4) are multiples of this
ASPECT_TIEBREAK = 0.01  # weight of the aspect-ratio deviation against log(N / target)


@dataclass(frozen=True)
class ShapeFamily:
    name: str
    head_dim: int
    aspect: float  # d_model / n_layers
    kv_ratio: int  # query heads per key/value head (1: multi-head attention)
    ffn_multiple: int  # SwiGLU width: 8/3 d_model rounded up to a multiple of this
    tie_embeddings: bool
    max_seq_len: int
    tokenizer: str  # the conf/tokenizer option whose vocabulary the family is sized with
    rope_theta: float = 10000.0
    max_params: float = math.inf  # CPU families: no shapes beyond this (use gpt or llama)
    aspect_band: float = ASPECT_BAND  # depths with d/L within this factor of `aspect`

    def widths(self) -> Iterator[int]:
        """d_model = head_dim x heads for heads 1, 2, 4, 8, 16, 24, ..."""
        yield from (self.head_dim * h for h in (1, 2, 4))
        h = HEAD_MULTIPLE
        while True:
            yield self.head_dim * h
            h += HEAD_MULTIPLE

    @property
    def smallest_width(self) -> int:
        return self.head_dim

    def model(self, d_model: int, n_layers: int, name: Optional[str] = None) -> ModelConfig:
        n_heads = d_model // self.head_dim
        ffn = self.ffn_multiple * math.ceil(8 * d_model / 3 / self.ffn_multiple)
        # Fewer heads than the GQA group (the smallest widths): one KV head serves them all.
        n_kv = max(1, n_heads // self.kv_ratio)
        return ModelConfig(
            name=name or f"{self.name}-d{d_model}-l{n_layers}",
            n_layers=n_layers, d_model=d_model, n_heads=n_heads, n_kv_heads=n_kv,
            ffn_dim=ffn, max_seq_len=self.max_seq_len, rope_theta=self.rope_theta,
            tie_embeddings=self.tie_embeddings,
        )

    def depths(self, d_model: int) -> range:
        """Depths whose d/L is within ASPECT_BAND of the family's and inside ASPECT_RANGE (one
        layer at least: the narrowest widths cannot reach the range's ceiling)."""
        lo_aspect = max(self.aspect / self.aspect_band, ASPECT_RANGE[0])
        hi_aspect = min(self.aspect * self.aspect_band, ASPECT_RANGE[1])
        low = max(1, math.ceil(d_model / hi_aspect))
        high = max(low, math.floor(d_model / lo_aspect))
        return range(low, high + 1)


FAMILIES = {
    # The `tiny` preset's shape rule: d/L = 64 (within a factor 2: the widths 64, 128, 256 are a
    # factor 2 apart), 32-wide heads, 2 query heads per KV head, tied.
    "tiny": ShapeFamily("tiny", head_dim=32, aspect=64, kv_ratio=2, ffn_multiple=64, tie_embeddings=True,
                        max_seq_len=256, tokenizer="bpe", max_params=1e8, aspect_band=2.0),
    # For CPU studies below a few million parameters: 16-wide heads, d/L = 32 within a factor 2
    # (so depths 1-3 at width 64 and 2-6 at 128 fill the gaps between the widths).
    "micro": ShapeFamily("micro", head_dim=16, aspect=32, kv_ratio=1, ffn_multiple=32, tie_embeddings=True,
                         max_seq_len=256, tokenizer="bpe", max_params=1e7, aspect_band=2.0),
    # GPT-3's rule: d/L = 64, 64-wide heads, tied embeddings (the 125m preset's 12 heads are not
    # a multiple of 8: the family's nearest shapes have 8 or 16).
    "gpt": ShapeFamily("gpt", head_dim=64, aspect=64, kv_ratio=1, ffn_multiple=256, tie_embeddings=True,
                       max_seq_len=2048, tokenizer="gpt2"),
    # Llama-2's (the `7b`, `13b` presets): d/L = 128, 128-wide heads, untied.
    "llama": ShapeFamily("llama", head_dim=128, aspect=128, kv_ratio=1, ffn_multiple=256, tie_embeddings=False,
                         max_seq_len=4096, tokenizer="bpe_32k"),
}


@dataclass(frozen=True)
class Shape:
    model: ModelConfig
    params: ParamCount
    flops_per_token: int  # exact, with attention at the family's sequence length

    @property
    def n(self) -> int:
        return self.params.total


def family(name: str) -> ShapeFamily:
    if name not in FAMILIES:
        raise ScalingError(f"--family {name!r}: allowed: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def candidates(fam: ShapeFamily, vocab_size: int, min_params: float, max_params: float,
               seq_len: Optional[int] = None) -> Iterator[Shape]:
    """Every shape of the family with min_params <= N <= max_params (and the family's cap),
    narrowest first."""
    seq = seq_len or fam.max_seq_len
    max_params = min(max_params, fam.max_params)
    for d in fam.widths():
        depths = fam.depths(d)
        if count_params(fam.model(d, depths[0]), vocab_size).total > max_params:
            return
        # N grows with depth: skip to the first depth inside the window.
        first = bisect.bisect_left(depths, min_params, key=lambda n_layers: count_params(fam.model(d, n_layers), vocab_size).total)
        for n_layers in depths[first:]:
            model = fam.model(d, n_layers)
            params = count_params(model, vocab_size)
            if params.total > max_params:
                break
            yield Shape(model, params, flops_per_token(model, params, seq))


def shape_for_params(target: float, fam: ShapeFamily, vocab_size: int, seq_len: Optional[int] = None) -> Shape:
    """The family's shape whose exact parameter count is nearest `target`."""
    if not (target > 0 and math.isfinite(target)):
        raise ScalingError(f"target parameter count {target}: must be a finite number > 0")
    if target > fam.max_params:
        raise ScalingError(f"family {fam.name!r} is for CPU-sized models (up to {fam.max_params:.0e} parameters; "
                           f"{fam.head_dim}-wide heads): use --family gpt or llama for {target:.3g}")

    def score(s: Shape) -> float:
        aspect = s.model.d_model / s.model.n_layers
        return abs(math.log(s.n / target)) + ASPECT_TIEBREAK * abs(math.log(aspect / fam.aspect))

    # Look near the target first (large families have thousands of shapes); below the
    # family's smallest shape, that shape is the answer.
    smallest = count_params(fam.model(fam.smallest_width, 1), vocab_size).total
    for factor in (1.01, 1.1, 2.0):
        low, high = target / factor, max(target * factor, smallest)
        found = list(candidates(fam, vocab_size, low, high, seq_len))
        if found:
            return min(found, key=score)
    raise ScalingError(f"family {fam.name!r} has no shape within a factor 2 of {target:.3g} parameters")


def model_yaml(model: ModelConfig, comment: str = "") -> str:
    """A conf/model/*.yaml file for `model` (vocab_size left to the tokenizer when unset)."""
    body = {k: v for k, v in OmegaConf.to_container(OmegaConf.structured(model)).items()
            if not (k == "vocab_size" and v is None)}
    header = "".join(f"# {line}\n" for line in comment.splitlines())
    return header + OmegaConf.to_yaml(OmegaConf.create(body))


def write_model_yaml(config_dir: Path, stem: str, model: ModelConfig, comment: str = "") -> Path:
    """Write config_dir/model/<stem>.yaml: `--config-dir config_dir model=<stem>` selects it."""
    path = Path(config_dir) / "model" / f"{stem}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(model_yaml(model, comment))
    return path
