"""Approach 1 of Hoffmann et al. (2022): the envelope of training curves. Every run logs its
validation loss along the way (metrics.csv); at each compute C the lowest loss any size reaches
is the envelope, and the size that reaches it is N_opt(C). Power laws through those minima give
a second, independent estimate of the exponents from the same runs.

Between the sizes trained the minimum is refined by a parabola in log N through the best size
and its two neighbours; a C whose best size is the smallest or largest trained says nothing
about the optimum and is skipped.

Caveat (printed with the fit): a cosine run's loss part-way is above what a run scheduled to
end there reaches (Hoffmann et al. trained four schedule lengths per size for this reason);
WSD stable-phase losses lag likewise until cooled down (llmexp.scaling.cooldown gives real
intermediate points). The envelope then favours smaller models than approaches 2 and 3.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Sequence, Tuple

import numpy as np

from llmexp.scaling.errors import ScalingError
from llmexp.scaling.flops import FlopCount
from llmexp.scaling.laws import PowerLawAllocation

GRID = 40  # compute values across the range the curves share
MIN_SIZES = 3
MIN_POINTS = 3
CAVEAT = ("intermediate losses of a decaying schedule lag a run scheduled to end there, so the envelope leans to "
          "smaller N than approaches 2 and 3 (cooldown branches of WSD runs remove the lag)")


@dataclass
class EnvelopePoint:
    compute: float
    params: float
    tokens: float
    loss: float


@dataclass
class EnvelopeFit:
    points: List[EnvelopePoint]
    law: PowerLawAllocation
    sizes: int
    warnings: List[str] = field(default_factory=list)


Curve = Tuple[float, float, np.ndarray, np.ndarray]  # (N, FLOPs per token in the convention, tokens, loss)


def envelope(curves: Sequence[Curve], count: FlopCount) -> List[EnvelopePoint]:
    """Minima of the envelope of training curves over a grid of compute."""
    by_size: dict = {}
    for N, per_token, tokens, loss in curves:
        tokens, loss = np.asarray(tokens, float), np.asarray(loss, float)
        ok = (tokens > 0) & np.isfinite(loss) & (loss > 0)
        if ok.sum() >= 2:
            order = np.argsort(tokens[ok])
            by_size.setdefault(float(N), []).append((np.log(per_token * tokens[ok][order]), np.log(loss[ok][order])))
    sizes = np.array(sorted(by_size))
    if len(sizes) < MIN_SIZES:
        raise ScalingError(f"approach 1: curves of {len(sizes)} distinct size(s) with >= 2 logged losses; "
                           f"the envelope needs >= {MIN_SIZES}")
    lows = [min(c[0][0] for c in by_size[n]) for n in sizes]
    highs = [max(c[0][-1] for c in by_size[n]) for n in sizes]
    points = []
    for logc in np.linspace(min(lows), max(highs), GRID):
        best = np.full(len(sizes), np.inf)  # per size: the lowest loss any of its curves has at C
        for j, n in enumerate(sizes):
            for x, y in by_size[n]:
                if x[0] <= logc <= x[-1]:
                    best[j] = min(best[j], np.interp(logc, x, y))
        covered = np.flatnonzero(np.isfinite(best))
        if len(covered) < MIN_SIZES:
            continue
        k = covered[np.argmin(best[covered])]
        pos = int(np.flatnonzero(covered == k)[0])
        if pos == 0 or pos == len(covered) - 1:
            continue  # the best size is an edge of those that reach C
        three = covered[pos - 1:pos + 2]
        c2, c1, c0 = np.polyfit(np.log(sizes[three]), best[three], 2)
        if c2 <= 0:
            continue
        logN = -c1 / (2 * c2)
        C, N = float(np.exp(logc)), float(np.exp(logN))
        points.append(EnvelopePoint(C, N, float(count.tokens(N, C)), float(np.exp(c0 - c1 * c1 / (4 * c2)))))
    return points


def fit(curves: Sequence[Curve], count: FlopCount) -> EnvelopeFit:
    points = envelope(curves, count)
    if len(points) < MIN_POINTS:
        raise ScalingError(f"approach 1: the envelope's best size is an interior size at {len(points)} compute value(s), "
                           f"needs >= {MIN_POINTS} (train sizes on both sides of the optimum, log the validation loss "
                           "more often: trainer.val_every)")
    logC = np.log([p.compute for p in points])
    n_slope, n_icpt = np.polyfit(logC, np.log([p.params for p in points]), 1)
    d_slope, d_icpt = np.polyfit(logC, np.log([p.tokens for p in points]), 1)
    law = PowerLawAllocation(float(np.exp(n_icpt)), float(n_slope), float(np.exp(d_icpt)), float(d_slope),
                             name="envelope", source="llmexp.scaling approach 1 fit (envelope of training curves)",
                             flops=count.convention)
    span = np.exp(logC.max() - logC.min())
    warnings = [f"caveat: {CAVEAT}"]
    if span < 4:
        warnings.append(f"the usable envelope spans a factor {span:.2g} in compute: the exponents are loose")
    return EnvelopeFit(points, law, len({c[0] for c in curves}), warnings)
