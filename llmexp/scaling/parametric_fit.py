"""Approach 3 of Hoffmann et al. (2022): fit L(N, D) = E + A / N**alpha + B / D**beta to runs.

As in the paper, the fit minimises the Huber loss (delta = 1e-3) between the log of the
prediction, LSE(a - alpha log N, b - beta log D, e) with A = e^a, B = e^b, E = e^e, and the log
of the observed loss, with L-BFGS. Every point of the paper's grid of initialisations is scored
at once (numpy); L-BFGS starts from the best `starts` of them and the best end point wins.
Bootstrap resamples are multinomial weights over the points, each refitted with L-BFGS from the
full fit's optimum.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

from llmexp.scaling.errors import ScalingError
from llmexp.scaling.laws import ParametricLaw

DELTA = 1e-3
# Hoffmann et al. 2022, appendix D.2: alpha, beta in {0, .5, ..., 2}, e in {-1, -.5, ..., 1},
# a, b in {0, 5, ..., 25}.
GRID_ALPHA = np.arange(0.0, 2.01, 0.5)
GRID_E = np.arange(-1.0, 1.01, 0.5)
GRID_AB = np.arange(0.0, 25.1, 5.0)
MIN_POINTS = 6  # five parameters: one more point than parameters at the very least
WELL_DETERMINED = 3  # runs per parameter below which the fit gets a warning
LBFGS = {"maxiter": 2000, "ftol": 1e-10, "gtol": 1e-6}  # on the 1/delta^2-scaled objective


def init_grid() -> np.ndarray:
    """(4500, 5) starting points as (a, b, e, alpha, beta)."""
    a, b, e, al, be = np.meshgrid(GRID_AB, GRID_AB, GRID_E, GRID_ALPHA, GRID_ALPHA, indexing="ij")
    return np.stack([x.ravel() for x in (a, b, e, al, be)], axis=1)


def _predict(theta: np.ndarray, logN: np.ndarray, logD: np.ndarray):
    """log L for parameters theta (..., 5) at every point: LSE of the three terms, and the
    terms' softmax weights (d log L / d term)."""
    a, b, e, alpha, beta = (theta[..., i, None] for i in range(5))
    t1, t2, t3 = a - alpha * logN, b - beta * logD, np.broadcast_to(e, np.broadcast_shapes(e.shape, logN.shape))
    m = np.maximum(np.maximum(t1, t2), t3)
    x1, x2, x3 = np.exp(t1 - m), np.exp(t2 - m), np.exp(t3 - m)
    total = x1 + x2 + x3
    return m + np.log(total), (x1 / total, x2 / total, x3 / total)


def _huber(r: np.ndarray) -> np.ndarray:
    absr = np.abs(r)
    return np.where(absr <= DELTA, 0.5 * r * r, DELTA * (absr - 0.5 * DELTA))


def objective(theta: np.ndarray, logN, logD, logL, weights) -> tuple[float, np.ndarray]:
    """Weighted mean Huber loss, scaled by 1/delta^2 so L-BFGS sees O(1) numbers, and its gradient."""
    pred, (s1, s2, s3) = _predict(theta, logN, logD)
    r = pred - logL
    dh = np.clip(r, -DELTA, DELTA) * weights
    scale = 1.0 / (DELTA * DELTA * weights.sum())
    g = np.array([dh @ s1, dh @ s2, dh @ s3, -(dh * logN) @ s1, -(dh * logD) @ s2])
    return float(weights @ _huber(r)) * scale, g * scale


def grid_scores(logN, logD, logL, grid: np.ndarray) -> np.ndarray:
    """The objective at every grid point, vectorised over the grid in chunks."""
    out = np.empty(len(grid))
    chunk = max(1, 1_000_000 // max(1, len(logN)))
    for i in range(0, len(grid), chunk):
        pred, _ = _predict(grid[i:i + chunk], logN, logD)
        out[i:i + chunk] = _huber(pred - logL).mean(axis=-1)
    return out


def _lbfgs(theta0, logN, logD, logL, weights):
    res = minimize(objective, theta0, args=(logN, logD, logL, weights), jac=True, method="L-BFGS-B", options=LBFGS)
    return res.x, res.fun


def to_law(theta: np.ndarray, name: str = "fitted") -> ParametricLaw:
    a, b, e, alpha, beta = (float(x) for x in theta)
    return ParametricLaw(name, E=float(np.exp(e)), A=float(np.exp(a)), B=float(np.exp(b)), alpha=alpha, beta=beta,
                         source="llmexp.scaling approach 3 fit (Huber on log loss, L-BFGS)")


@dataclass
class ParametricFit:
    law: ParametricLaw
    theta: np.ndarray  # (a, b, e, alpha, beta)
    objective: float
    n_points: int
    boot: Optional[np.ndarray] = None  # (R, 5) bootstrap thetas
    boot_failed: int = 0
    warnings: List[str] = field(default_factory=list)


def _warnings(law: ParametricLaw, n: int) -> List[str]:
    """What makes a fit untrustworthy although it converged."""
    out = []
    if n < WELL_DETERMINED * 5:
        out.append(f"only {n} runs for 5 parameters: the fit is weakly determined (see the intervals)")
    if law.E < 1e-2:
        out.append(f"E = {law.E:.3g}: the runs do not pin down an irreducible loss")
    for name in ("alpha", "beta"):
        value = getattr(law, name)
        if not 0.02 <= value <= 2.5:
            out.append(f"{name} = {value:.3g} is outside the plausible range 0.02..2.5")
    return out


def check_points(N, D, L) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    N, D, L = (np.asarray(x, float) for x in (N, D, L))
    if not (N.shape == D.shape == L.shape) or N.ndim != 1:
        raise ScalingError("parametric fit: N, D and loss must be 1-d arrays of one length")
    if not (np.all(np.isfinite(N)) and np.all(np.isfinite(D)) and np.all(np.isfinite(L))):
        raise ScalingError("parametric fit: non-finite N, D or loss (drop those runs first)")
    if np.any(N <= 0) or np.any(D <= 0) or np.any(L <= 0):
        raise ScalingError("parametric fit: N, D and loss must be > 0")
    if len(N) < MIN_POINTS or len(np.unique(N)) < 3 or len(np.unique(D)) < 3:
        raise ScalingError(
            f"parametric fit: {len(N)} runs with {len(np.unique(N))} distinct sizes and {len(np.unique(D))} "
            f"distinct token counts; L(N, D) has 5 parameters and needs >= {MIN_POINTS} runs and >= 3 of each"
        )
    return N, D, L


def fit(N, D, L, *, starts: Optional[int] = 20, bootstrap: int = 0, seed: int = 0) -> ParametricFit:
    """Fit the law to runs (N params, D tokens, final loss L); `starts=None`: L-BFGS from every
    grid point, as the paper. `bootstrap` resamples give the fit's uncertainty."""
    N, D, L = check_points(N, D, L)
    if starts is not None and starts < 1:
        raise ScalingError(f"parametric fit: starts={starts}: must be >= 1 (None: every grid point)")
    # L-BFGS-B's 5-dimensional linear algebra only loses to BLAS threads, badly on a busy machine.
    with threadpool_limits(limits=1, user_api="blas"):
        return _fit(np.log(N), np.log(D), np.log(L), starts, bootstrap, seed)


def _fit(logN, logD, logL, starts, bootstrap, seed) -> ParametricFit:
    grid = init_grid()
    order = np.argsort(grid_scores(logN, logD, logL, grid))
    chosen = grid[order if starts is None else order[:starts]]
    ones = np.ones_like(logN)
    best_theta, best_f = None, np.inf
    for theta0 in chosen:
        theta, f = _lbfgs(theta0, logN, logD, logL, ones)
        if f < best_f:
            best_theta, best_f = theta, f
    law = to_law(best_theta)
    result = ParametricFit(law, best_theta, best_f, len(logN), warnings=_warnings(law, len(logN)))
    if bootstrap:
        rng = np.random.default_rng(seed)
        n = len(logN)
        weights = rng.multinomial(n, np.full(n, 1.0 / n), size=bootstrap).astype(float)
        boot = np.array([_lbfgs(best_theta, logN, logD, logL, w)[0] for w in weights])
        ok = np.all(np.isfinite(boot), axis=1) & (boot[:, 3] > 0) & (boot[:, 4] > 0)
        result.boot, result.boot_failed = boot[ok], int((~ok).sum())
    return result
