"""Approach 2 of Hoffmann et al. (2022): at each budget fit a parabola to the final loss
against log N; its vertex is that budget's compute-optimal N (and the D it buys). Power laws
N_opt = kN C**a and D_opt = kD C**b are then least-squares lines through the vertices in
log-log space.

Budgets are binned: runs whose nominal budgets lie within a relative `tolerance` of the bin's
first are one IsoFLOP curve (runs from elsewhere rarely share a budget to the last digit); a
run without a budget is left out of approach 2 alone, with its reason. Each minimum's compute is
read off its curve in the report's FLOP convention (llmexp.scaling.flops): the runs' own
compute, interpolated in log N to the vertex, so the power laws and approach 3 share units.

Bootstrap: the sizes of an IsoFLOP study are chosen, not sampled, so resampling runs would
mostly draw fewer than three distinct sizes at a budget. The residuals of the parabolas are
resampled instead (pooled over budgets, scaled for leverage) and added to each budget's fitted
curve; every resample's parabolas are one matrix product.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np

from llmexp.scaling.errors import ScalingError
from llmexp.scaling.laws import PowerLawAllocation

MIN_SIZES = 3  # a parabola has three coefficients
MIN_BUDGETS = 2  # a line through the vertices
TOLERANCE = 0.05  # budgets within 5% of each other are one curve
# Published compute-optimal exponents: a = 0.46-0.50 (Hoffmann et al.'s three approaches),
# 0.49-0.55 (Besiroglu et al., DeepSeek LLM, Llama 3); Kaplan et al.'s 0.73 is the known
# outlier (fixed token schedules). Outside this range a fit is more likely broken than new.
PLAUSIBLE_A = (0.3, 0.8)
SUM_TOLERANCE = 0.15  # N_opt * D_opt ~ C: a + b within this of 1


@dataclass
class BudgetMinimum:
    budget: float  # the bin's nominal budget (geometric mean of its runs')
    compute: float  # the minimum's compute in the report's convention
    n_runs: int
    params: float
    tokens: float
    loss: float
    coef: Tuple[float, float, float]  # loss = c2 x^2 + c1 x + c0 with x = log N - x_mean
    x_mean: float
    interior: bool  # the vertex lies within the sizes trained

    def loss_at(self, N):
        x = np.log(N) - self.x_mean
        c2, c1, c0 = self.coef
        return c2 * x * x + c1 * x + c0


@dataclass
class IsoflopFit:
    minima: List[BudgetMinimum]
    law: PowerLawAllocation
    excluded: List[Tuple[float, str]] = field(default_factory=list)  # (budget, why)
    excluded_rows: List[Tuple[int, str]] = field(default_factory=list)  # (row, why)
    warnings: List[str] = field(default_factory=list)
    boot: Optional[np.ndarray] = None  # (R, 4): log kN, a, log kD, b
    boot_failed: int = 0


@dataclass
class _Budget:
    """One budget's runs in the coordinates of its parabola fit."""

    x: np.ndarray  # log N - x_mean
    y: np.ndarray  # final loss
    x_mean: float
    d_slope: float  # log D = d_icpt + d_slope log N at this budget
    d_icpt: float
    c_slope: float  # log compute = c_icpt + c_slope log N (the report's convention)
    c_icpt: float

    @property
    def design(self) -> np.ndarray:
        return np.stack([self.x * self.x, self.x, np.ones_like(self.x)], axis=-1)


def _vertices(budget: _Budget, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares parabolas through each row of losses Y (R, n): coefficients (R, 3), vertex
    x, vertex loss, and whether the parabola opens upward (has a minimum)."""
    coef = Y @ np.linalg.pinv(budget.design).T
    c2, c1, c0 = coef.T
    valid = c2 > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        xv = np.where(valid, -c1 / (2 * c2), np.nan)
        return coef, xv, c0 - c1 * c1 / (4 * c2), valid


def _line(x: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares intercepts and slopes of each row of Y (R, B) against x (B,)."""
    return _lines(np.broadcast_to(x, Y.shape), Y)


def _lines(X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares intercepts and slopes of each row of Y against the same row of X (R, B)."""
    xc = X - X.mean(axis=1, keepdims=True)
    slope = np.einsum("rb,rb->r", xc, Y - Y.mean(axis=1, keepdims=True)) / np.einsum("rb,rb->r", xc, xc)
    return Y.mean(axis=1) - slope * X.mean(axis=1), slope


def bins(budget: np.ndarray, tolerance: float) -> np.ndarray:
    """A bin index per run (-1 without a budget): sorted budgets start a new bin once they
    exceed the current bin's first budget by more than `tolerance` (relative)."""
    out = np.full(budget.shape, -1)
    known = np.flatnonzero(np.isfinite(budget))
    start, b = None, -1
    for i in known[np.argsort(budget[known], kind="stable")]:
        if start is None or budget[i] > start * (1.0 + tolerance):
            start, b = budget[i], b + 1
        out[i] = b
    return out


def bin_budget(values: np.ndarray) -> float:
    """A bin's nominal budget: its runs' common budget, or their geometric mean."""
    values = np.asarray(values, float)
    return float(values[0]) if np.all(values == values[0]) else float(np.exp(np.log(values).mean()))


def plausibility(law: PowerLawAllocation) -> List[str]:
    """Warnings for exponents that no published compute-optimal study comes near."""
    out = []
    if not PLAUSIBLE_A[0] <= law.a <= PLAUSIBLE_A[1]:
        out.append(f"N_opt exponent a = {law.a:.3g} is outside the plausible {PLAUSIBLE_A[0]}..{PLAUSIBLE_A[1]} "
                   "(published: 0.46-0.55)")
    if law.b <= 0:
        out.append(f"D_opt exponent b = {law.b:.3g} <= 0: more compute would buy fewer tokens")
    if abs(law.a + law.b - 1.0) > SUM_TOLERANCE:
        out.append(f"a + b = {law.a + law.b:.3g}, far from 1 (N_opt x D_opt must grow like C)")
    return out


def fit(budget, N, D, L, compute=None, *, tolerance: float = TOLERANCE, bootstrap: int = 0, seed: int = 0,
        flops: str = "exact") -> IsoflopFit:
    """Approach 2 on runs grouped by (binned) budget. `compute`: each run's FLOPs in the
    report's convention `flops` (default: its budget)."""
    budget, N, D, L = (np.asarray(a, float) for a in (budget, N, D, L))
    compute = budget if compute is None else np.asarray(compute, float)
    if not tolerance >= 0:
        raise ScalingError(f"budget tolerance {tolerance}: must be >= 0")
    minima, excluded, warnings, groups = [], [], [], []
    excluded_rows = [(int(i), "no budget: left out of approach 2 (approach 3 still uses it)")
                     for i in np.flatnonzero(~np.isfinite(budget))]
    which = bins(budget, tolerance)
    for b in range(which.max() + 1):
        idx = np.flatnonzero(which == b)
        C = bin_budget(budget[idx])
        sizes = len(np.unique(N[idx]))
        if sizes < MIN_SIZES:
            excluded.append((C, f"{sizes} distinct model size(s); a parabola needs {MIN_SIZES}"))
            continue
        logN = np.log(N[idx])
        # D and the compute are functions of N on one curve: interpolate them in log-log.
        d_slope, d_icpt = np.polyfit(logN, np.log(D[idx]), 1)
        c_slope, c_icpt = np.polyfit(logN, np.log(compute[idx]), 1)
        group = _Budget(logN - logN.mean(), L[idx], float(logN.mean()), float(d_slope), float(d_icpt),
                        float(c_slope), float(c_icpt))
        coef, xv, lv, valid = _vertices(group, group.y[None])
        if not valid[0]:
            excluded.append((C, "loss does not curve upward in log N (no minimum): widen the sizes"))
            continue
        logN_opt = float(xv[0]) + group.x_mean
        interior = bool(group.x.min() <= xv[0] <= group.x.max())
        if not interior:
            warnings.append(f"budget {C:.3g}: the fitted minimum N={np.exp(logN_opt):.3g} lies outside the sizes "
                            f"trained ({N[idx].min():.3g}..{N[idx].max():.3g}); it is extrapolated")
        minima.append(BudgetMinimum(C, float(np.exp(c_icpt + c_slope * logN_opt)), len(idx), float(np.exp(logN_opt)),
                                    float(np.exp(d_icpt + d_slope * logN_opt)), float(lv[0]),
                                    tuple(float(c) for c in coef[0]), group.x_mean, interior))
        groups.append(group)
    if len(minima) < MIN_BUDGETS:
        why = "; ".join([f"{c:.3g}: {r}" for c, r in excluded] + [f"{len(excluded_rows)} run(s) with no budget"] * bool(excluded_rows))
        why = why or "none excluded"
        raise ScalingError(f"IsoFLOP fit (approach 2): {len(minima)} usable budget(s), needs >= {MIN_BUDGETS} budgets "
                           f"with >= {MIN_SIZES} sizes each (excluded: {why})")
    if len(minima) == MIN_BUDGETS:
        warnings.append("only 2 budgets: the power laws pass exactly through both minima; 3 or more test them")
    logC = np.log([m.compute for m in minima])
    icpt, slope = _line(logC, np.log([[m.params for m in minima], [m.tokens for m in minima]]))
    law = PowerLawAllocation(float(np.exp(icpt[0])), float(slope[0]), float(np.exp(icpt[1])), float(slope[1]),
                             source="llmexp.scaling approach 2 fit (IsoFLOP minima)", flops=flops)
    warnings += plausibility(law)
    result = IsoflopFit(minima, law, excluded, excluded_rows, warnings)
    if bootstrap:
        pool = _residual_pool(groups)
        if pool is None:
            warnings.append("no parabola has more runs than coefficients: no residuals, so no bootstrap intervals "
                            f"(train >= {MIN_SIZES + 1} sizes per budget)")
        else:
            result.boot, result.boot_failed = _bootstrap(groups, pool, bootstrap, seed)
    return result


def _residual_pool(groups: List[_Budget]) -> Optional[np.ndarray]:
    """Every budget's parabola residuals, divided by sqrt(1 - leverage) so that they have the
    noise's variance, centred; None when no budget has more runs than coefficients."""
    pooled = []
    for g in groups:
        X = g.design
        leverage = np.einsum("ij,ji->i", X, np.linalg.pinv(X))
        free = leverage < 1 - 1e-9
        residual = g.y - X @ (np.linalg.pinv(X) @ g.y)
        pooled.append(residual[free] / np.sqrt(1 - leverage[free]))
    pool = np.concatenate(pooled)
    return pool - pool.mean() if pool.size else None


def _bootstrap(groups: List[_Budget], pool: np.ndarray, R: int, seed: int) -> tuple[np.ndarray, int]:
    """Refit every resample's power laws; each resample's minima carry their own compute."""
    rng = np.random.default_rng(seed)
    logN_opt, logD_opt, logC = (np.empty((R, len(groups))) for _ in range(3))
    ok = np.ones(R, bool)
    for j, g in enumerate(groups):
        fitted = g.design @ (np.linalg.pinv(g.design) @ g.y)
        _, xv, _, valid = _vertices(g, fitted + rng.choice(pool, size=(R, len(g.y))))
        ok &= valid
        logN_opt[:, j] = xv + g.x_mean
        logD_opt[:, j] = g.d_icpt + g.d_slope * logN_opt[:, j]
        logC[:, j] = g.c_icpt + g.c_slope * logN_opt[:, j]
    n_icpt, n_slope = _lines(logC[ok], logN_opt[ok])
    d_icpt, d_slope = _lines(logC[ok], logD_opt[ok])
    return np.stack([n_icpt, n_slope, d_icpt, d_slope], axis=1), int((~ok).sum())
