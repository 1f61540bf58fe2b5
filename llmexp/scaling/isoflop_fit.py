"""Approach 2 of Hoffmann et al. (2022): at each budget fit a parabola to the final loss
against log N; its vertex is that budget's compute-optimal N (and the D it buys). Power laws
N_opt = kN C**a and D_opt = kD C**b are then least-squares lines through the vertices in
log-log space.

Bootstrap: the runs of each budget are resampled (multinomial weights), and every resample's
parabolas are solved at once as a batch of 3x3 weighted normal equations.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np

from llmexp.scaling.errors import ScalingError
from llmexp.scaling.laws import PowerLawAllocation

MIN_SIZES = 3  # a parabola has three coefficients
MIN_BUDGETS = 2  # a line through the vertices


@dataclass
class BudgetMinimum:
    budget: float
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
    warnings: List[str] = field(default_factory=list)
    boot: Optional[np.ndarray] = None  # (R, 4): log kN, a, log kD, b
    boot_failed: int = 0


def _design(x: np.ndarray) -> np.ndarray:
    return np.stack([x * x, x, np.ones_like(x)], axis=-1)


def _parabolas(x, y, weights) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Weighted parabola fits for every row of `weights` (R, n): coefficients (R, 3), vertex x,
    vertex loss, and valid (>= 3 distinct sizes drawn and the parabola opens upward)."""
    X = _design(x)
    M = np.einsum("rn,ni,nj->rij", weights, X, X)
    v = np.einsum("rn,ni,n->ri", weights, X, y)
    distinct = (weights > 0).sum(axis=1) >= MIN_SIZES
    coef = np.full((len(weights), 3), np.nan)
    coef[distinct] = np.linalg.solve(M[distinct], v[distinct][..., None])[..., 0]
    c2, c1, c0 = coef.T
    valid = distinct & (c2 > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        xv = np.where(valid, -c1 / (2 * c2), np.nan)
        return coef, xv, c0 - c1 * c1 / (4 * c2), valid


def _line(x: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares intercepts and slopes of each row of Y (R, B) against x (B,)."""
    xc = x - x.mean()
    slope = (Y - Y.mean(axis=1, keepdims=True)) @ xc / (xc @ xc)
    return Y.mean(axis=1) - slope * x.mean(), slope


def fit(budget, N, D, L, *, bootstrap: int = 0, seed: int = 0, flops: str = "exact") -> IsoflopFit:
    """Approach 2 on runs grouped by budget; `flops` names how the budgets count FLOPs."""
    budget, N, D, L = (np.asarray(a, float) for a in (budget, N, D, L))
    minima, excluded, warnings, groups = [], [], [], []
    for C in np.unique(budget):
        idx = np.flatnonzero(budget == C)
        sizes = len(np.unique(N[idx]))
        if sizes < MIN_SIZES:
            excluded.append((float(C), f"{sizes} distinct model size(s); a parabola needs {MIN_SIZES}"))
            continue
        logN = np.log(N[idx])
        x_mean = float(logN.mean())
        x = logN - x_mean
        coef, xv, lv, valid = _parabolas(x, L[idx], np.ones((1, len(idx))))
        if not valid[0]:
            excluded.append((float(C), "loss does not curve upward in log N (no minimum): widen the sizes"))
            continue
        # D is a function of N at a fixed budget (C / FLOPs per token): interpolate it in log-log.
        d_slope, d_icpt = np.polyfit(logN, np.log(D[idx]), 1)
        logN_opt = float(xv[0]) + x_mean
        interior = bool(x.min() <= xv[0] <= x.max())
        if not interior:
            warnings.append(f"budget {C:.3g}: the fitted minimum N={np.exp(logN_opt):.3g} lies outside the sizes "
                            f"trained ({N[idx].min():.3g}..{N[idx].max():.3g}); it is extrapolated")
        minima.append(BudgetMinimum(float(C), len(idx), float(np.exp(logN_opt)), float(np.exp(d_icpt + d_slope * logN_opt)),
                                    float(lv[0]), tuple(float(c) for c in coef[0]), x_mean, interior))
        groups.append((x, L[idx], x_mean, d_slope, d_icpt))
    if len(minima) < MIN_BUDGETS:
        why = "; ".join(f"{c:.3g}: {r}" for c, r in excluded) or "none excluded"
        raise ScalingError(f"IsoFLOP fit (approach 2): {len(minima)} usable budget(s), needs >= {MIN_BUDGETS} budgets "
                           f"with >= {MIN_SIZES} sizes each (excluded: {why})")
    if len(minima) == MIN_BUDGETS:
        warnings.append("only 2 budgets: the power laws pass exactly through both minima; 3 or more test them")
    logC = np.log([m.budget for m in minima])
    icpt, slope = _line(logC, np.log([[m.params for m in minima], [m.tokens for m in minima]]))
    law = PowerLawAllocation(float(np.exp(icpt[0])), float(slope[0]), float(np.exp(icpt[1])), float(slope[1]),
                             source="llmexp.scaling approach 2 fit (IsoFLOP minima)", flops=flops)
    result = IsoflopFit(minima, law, excluded, warnings)
    if bootstrap:
        result.boot, result.boot_failed = _bootstrap(groups, logC, bootstrap, seed)
    return result


def _bootstrap(groups, logC, R: int, seed: int) -> tuple[np.ndarray, int]:
    rng = np.random.default_rng(seed)
    logN_opt, logD_opt = np.empty((R, len(groups))), np.empty((R, len(groups)))
    ok = np.ones(R, bool)
    for j, (x, y, x_mean, d_slope, d_icpt) in enumerate(groups):
        w = rng.multinomial(len(x), np.full(len(x), 1.0 / len(x)), size=R).astype(float)
        _, xv, _, valid = _parabolas(x, y, w)
        ok &= valid
        logN_opt[:, j] = xv + x_mean
        logD_opt[:, j] = d_icpt + d_slope * logN_opt[:, j]
    n_icpt, n_slope = _line(logC, logN_opt[ok])
    d_icpt, d_slope = _line(logC, logD_opt[ok])
    return np.stack([n_icpt, n_slope, d_icpt, d_slope], axis=1), int((~ok).sum())
