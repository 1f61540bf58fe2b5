"""The planner: a compute budget (FLOPs or accelerator-hours), a model size or a token budget
-> the compute-optimal (N, D) under a law, its FLOPs (6ND and exact), loss and time."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from llmexp.accelerators import ACCELERATORS
from llmexp.scaling.errors import ScalingError
from llmexp.scaling.laws import Law, ParametricLaw, ResolvedLaw, law_loss
from llmexp.scaling.shapes import Shape, ShapeFamily, candidates, shape_for_params

SEARCH_FACTOR = 4.0  # exact-FLOPs shape search: within this factor of the law's N_opt


@dataclass(frozen=True)
class ShapePlan:
    """A concrete model of the family and the tokens it trains on, FLOPs counted exactly."""

    shape: Shape
    tokens: float
    loss: Optional[float]

    @property
    def flops(self) -> float:
        return self.shape.flops_per_token * self.tokens

    @property
    def flops_6nd(self) -> float:
        return 6.0 * self.shape.n * self.tokens


@dataclass(frozen=True)
class Allocation:
    law: Law
    given: str  # compute | params | tokens
    compute: float  # in the law's FLOPs convention (law.flops)
    params: float
    tokens: float
    loss: Optional[float]
    shape: Optional[ShapePlan] = None

    @property
    def tokens_per_param(self) -> float:
        return self.tokens / self.params

    def to_dict(self) -> dict:
        out = {"law": self.law.to_dict(), "given": self.given, "compute": self.compute,
               "params": self.params, "tokens": self.tokens, "tokens_per_param": self.tokens_per_param,
               "flops_6nd": 6.0 * self.params * self.tokens, "loss": self.loss}
        if self.shape:
            s = self.shape
            out["shape"] = {"model": vars(s.shape.model), "params": s.shape.n,
                            "flops_per_token": s.shape.flops_per_token, "flops_per_token_6n": 6 * s.shape.n,
                            "tokens": s.tokens, "flops": s.flops, "flops_6nd": s.flops_6nd, "loss": s.loss}
        return out


def usable_law(resolved: ResolvedLaw, spec: str, allow_warnings: bool = False) -> Law:
    """The law to plan with: a study fit that carries warnings (extrapolated minima, too few
    budgets, implausible exponents ...) is refused unless `allow_warnings`."""
    if resolved.warnings and not allow_warnings:
        raise ScalingError(f"--law {spec}: the fit carries {len(resolved.warnings)} warning(s), first: "
                           f"{resolved.warnings[0]}; refit it (more budgets or sizes, --outliers) or pass "
                           "--allow-warnings to plan with it anyway")
    return resolved.law


def compute_from_hours(hours: float, accelerator: str, mfu: float) -> float:
    """FLOPs that `hours` accelerator-hours deliver at model-FLOPs utilisation `mfu`."""
    return hours * 3600.0 * peak_flops(accelerator) * mfu


def hours_for(flops: float, accelerator: str, mfu: float) -> float:
    return flops / (peak_flops(accelerator) * mfu) / 3600.0


def peak_flops(accelerator: str) -> float:
    if accelerator not in ACCELERATORS:
        raise ScalingError(f"accelerator {accelerator!r}: allowed: {', '.join(ACCELERATORS)}")
    return ACCELERATORS[accelerator].peak_bf16_flops


def _positive(name: str, value: float) -> float:
    if not (value > 0 and math.isfinite(value)):
        raise ScalingError(f"{name}={value}: must be a finite number > 0")
    return float(value)


def plan(law: Law, *, compute: Optional[float] = None, params: Optional[float] = None,
         tokens: Optional[float] = None, family: Optional[ShapeFamily] = None,
         vocab_size: Optional[int] = None, seq_len: Optional[int] = None) -> Allocation:
    """Exactly one of compute, params, tokens. With a family (and its vocabulary), also the
    concrete shape: for a budget, the family's shape that is compute-optimal with FLOPs counted
    exactly (least predicted loss for a parametric law, else the law's tokens per parameter);
    for a size or token count, the shape nearest the law's N."""
    given = [k for k, v in (("compute", compute), ("params", params), ("tokens", tokens)) if v is not None]
    if len(given) != 1:
        raise ScalingError("give exactly one of a compute budget, a model size or a token count")
    if compute is not None:
        C = _positive("compute", compute)
        N, D = (float(x) for x in law.optimal(C))
    elif params is not None:
        N = _positive("params", params)
        D = float(law.optimal_tokens(N))
        C = _budget_for(law, N, D)
    else:
        D = _positive("tokens", tokens)
        N = float(law.optimal_params(D))
        C = _budget_for(law, N, D)
    shape_plan = None
    if family is not None:
        if vocab_size is None:
            raise ScalingError("a shape family needs the vocabulary size")
        if compute is not None:
            shape = _optimal_shape(law, C, N, D, family, vocab_size, seq_len)
            shape_tokens = C / shape.flops_per_token
        else:
            shape, shape_tokens = shape_for_params(N, family, vocab_size, seq_len), D
        shape_plan = ShapePlan(shape, shape_tokens, law_loss(law, shape.n, shape_tokens))
    return Allocation(law, given[0], C, N, D, law_loss(law, N, D), shape_plan)


def _budget_for(law: Law, N: float, D: float) -> float:
    """The budget for which (N, D) is optimal, in the law's FLOPs convention."""
    if law.flops == "6ND":
        return 6.0 * N * D
    return (N / law.kN) ** (1.0 / law.a)  # a fitted power law: invert N_opt(C) = kN C^a


def _optimal_shape(law: Law, C: float, N: float, D: float, family: ShapeFamily, vocab_size: int,
                   seq_len: Optional[int]) -> Shape:
    shapes = list(candidates(family, vocab_size, N / SEARCH_FACTOR, N * SEARCH_FACTOR, seq_len))
    if not shapes:
        return shape_for_params(N, family, vocab_size, seq_len)
    if isinstance(law, ParametricLaw):
        return min(shapes, key=lambda s: law.loss(s.n, C / s.flops_per_token))
    ratio = D / N
    return min(shapes, key=lambda s: abs(math.log(C / s.flops_per_token / s.n / ratio)))
