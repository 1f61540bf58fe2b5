"""One FLOP convention per report: every budget, optimum and axis counts training FLOPs either
exactly (6 x matmul weights + attention per token, llmexp.plan.flops_per_token: 1.25-1.44x 6N
for the tiny models of docs/scaling.md's CPU study, +8% at 32B with a 4k context) or as 6ND (Kaplan et al. 2020,
what published laws use). A report picks one with `--flops` and states it on every axis.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.interpolate import PchipInterpolator

from llmexp.scaling.errors import ScalingError

CONVENTIONS = ("exact", "6ND")
LABELS = {"exact": "FLOPs counted exactly (attention included)", "6ND": "FLOPs as 6ND"}


@dataclass(frozen=True)
class FlopCount:
    """FLOPs per token as a function of N. Exact counts come from the runs themselves (their
    total FLOPs / tokens). Between shapes of one family the attention share jumps with depth and
    width, so the ratio to 6N is not smooth in N: the optimum search uses a least-squares power
    law of it (never below 6N; `rms` says how far the runs sit from it), and `as_trained` draws
    each budget's curve exactly through its runs (PCHIP in log-log)."""

    convention: str
    logN: np.ndarray  # the runs' distinct log sizes, ascending
    log_ratio: np.ndarray  # log(exact FLOPs per token / 6N) at each
    intercept: float  # log_ratio ~ intercept + slope log N
    slope: float

    @property
    def label(self) -> str:
        return LABELS[self.convention]

    @property
    def rms(self) -> float:
        """rms of the runs' log FLOPs per token about the power law (0 under 6ND)."""
        if self.convention == "6ND" or self.logN.size == 0:
            return 0.0
        return float(np.sqrt(np.mean((self.intercept + self.slope * self.logN - self.log_ratio) ** 2)))

    def per_token(self, N):
        N = np.asarray(N, float)
        if self.convention == "6ND" or self.logN.size == 0:
            return 6.0 * N
        return 6.0 * N * np.exp(np.maximum(self.intercept + self.slope * np.log(N), 0.0))

    def compute(self, N, D):
        return self.per_token(N) * np.asarray(D, float)

    def tokens(self, N, C):
        return np.asarray(C, float) / self.per_token(N)

    def as_trained(self, N, C):
        """Tokens that C buys at N's exact FLOPs per token, interpolated through the runs."""
        if self.logN.size < 2:
            return np.asarray(C, float) / (6.0 * np.asarray(N, float) * np.exp(self.log_ratio[0] if self.logN.size else 0))
        x = np.clip(np.log(N), self.logN[0], self.logN[-1])
        ratio = PchipInterpolator(self.logN, self.log_ratio)(x)
        return np.asarray(C, float) / (6.0 * np.asarray(N, float) * np.exp(ratio))


def flop_count(convention: str, N: Sequence[float], exact_per_token: Sequence[float]) -> FlopCount:
    """The convention `convention` for runs of sizes N with the given exact FLOPs per token."""
    if convention not in CONVENTIONS:
        raise ScalingError(f"--flops {convention!r}: expected {' or '.join(CONVENTIONS)}")
    N, fpt = np.asarray(N, float), np.asarray(exact_per_token, float)
    logN, idx = np.unique(np.log(N), return_index=True)
    log_ratio = np.log(fpt[idx] / (6.0 * N[idx]))
    slope, intercept = np.polyfit(logN, log_ratio, 1) if logN.size >= 2 else (0.0, float(log_ratio.mean()) if logN.size else 0.0)
    return FlopCount(convention, logN, log_ratio, float(intercept), float(slope))


SEARCH = np.linspace(-5.0, 5.0, 2001)  # log N around the 6ND optimum: steps of 0.5%


def optimal_split(law, C, count: FlopCount):
    """argmin_N L(N, C / FLOPs-per-token(N)) of a parametric law: its closed form under 6ND;
    otherwise a grid over log N around it (all budgets at once), refined by the parabola
    through the best grid point and its neighbours."""
    N6, D6 = law.optimal(C)
    if count.convention == "6ND":
        return N6, D6
    scalar = np.ndim(C) == 0
    C, x6 = np.atleast_1d(np.asarray(C, float)), np.log(np.atleast_1d(N6))
    x = x6[:, None] + SEARCH[None, :]
    N = np.exp(x)
    loss = law.loss(N, C[:, None] / count.per_token(N))
    k = np.clip(np.argmin(loss, axis=1), 1, len(SEARCH) - 2)
    rows = np.arange(len(C))
    y0, y1, y2 = loss[rows, k - 1], loss[rows, k], loss[rows, k + 1]
    curvature = y0 - 2 * y1 + y2
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(curvature > 0, 0.5 * (y0 - y2) / curvature, 0.0)
    step = SEARCH[1] - SEARCH[0]
    N = np.exp(x[rows, k] + np.clip(shift, -1, 1) * step)
    D = C / count.per_token(N)
    return (float(N[0]), float(D[0])) if scalar else (N, D)
