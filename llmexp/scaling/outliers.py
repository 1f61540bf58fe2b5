"""Outlier exclusion before the fits, as an option, every dropped run reported with its rule.

- `epoch`: Besiroglu et al. (2024) fitted 240 of the 245 runs they extracted from Chinchilla's
  figure 4, leaving out the 5 with the highest loss; the rule drops the same share (5/245) of
  highest-loss runs.
- `residual`: fit L(N, D) to all runs, drop those whose log-loss residual is more than 3.5
  robust standard deviations (1.4826 MAD) from the median residual (Iglewicz & Hoaglin's
  modified z-score), with a floor of 0.5% on the scale so near-noiseless runs keep their points.
- `both`: epoch, then residual on what is left.
"""
from __future__ import annotations

from typing import List, Tuple

import numpy as np

from llmexp.scaling import parametric_fit
from llmexp.scaling.errors import ScalingError
from llmexp.scaling.intervals import MAD_TO_SD

RULES = ("none", "epoch", "residual", "both")
EPOCH_SHARE = 5 / 245
Z_LIMIT = 3.5
SCALE_FLOOR = 5e-3  # in log loss: 0.5%


def epoch_rule(L: np.ndarray) -> List[Tuple[int, str]]:
    k = int(round(EPOCH_SHARE * len(L)))
    worst = np.argsort(L)[::-1][:k]
    return [(int(i), f"outlier (epoch rule: one of the {k} highest losses, {L[i]:.4f})") for i in worst]


def residual_rule(N: np.ndarray, D: np.ndarray, L: np.ndarray) -> List[Tuple[int, str]]:
    law = parametric_fit.fit(N, D, L, starts=5).law
    r = np.log(L) - np.log(law.loss(N, D))
    centre = np.median(r)
    scale = max(MAD_TO_SD * np.median(np.abs(r - centre)), SCALE_FLOOR)
    z = (r - centre) / scale
    return [(int(i), f"outlier (residual rule: log-loss residual {r[i]:+.3f}, {z[i]:+.1f} robust SDs)")
            for i in np.flatnonzero(np.abs(z) > Z_LIMIT)]


def outliers(rule: str, N, D, L) -> List[Tuple[int, str]]:
    """(index, why) of the runs `rule` leaves out, in index order."""
    if rule not in RULES:
        raise ScalingError(f"--outliers {rule!r}: expected {', '.join(RULES)}")
    N, D, L = (np.asarray(x, float) for x in (N, D, L))
    dropped: List[Tuple[int, str]] = []
    if rule in ("epoch", "both"):
        dropped += epoch_rule(L)
    if rule in ("residual", "both"):
        keep = np.setdiff1d(np.arange(len(L)), [i for i, _ in dropped])
        dropped += [(int(keep[i]), why) for i, why in residual_rule(N[keep], D[keep], L[keep])]
    return sorted(dropped)
