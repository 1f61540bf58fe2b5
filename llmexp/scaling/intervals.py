"""Bootstrap intervals that do not depend on how many resamples were drawn.

A percentile interval's ends are a handful of extreme resamples: with an IsoFLOP parabola
that is nearly flat in a resample its vertex lands far away, and the 2.5% quantile of the
approach-2 exponent moved from 0.18 to 0.33 between 200 and 1,000 resamples. Here the interval
is median +- z * 1.4826 MAD (a 50%-trimmed scale: the normal interval when the resamples are
normal, untouched by a few wild ones), on the log scale for positive quantities (A, B, E, N_opt,
D_opt ...), whose resamples are skewed.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from scipy.stats import norm

MAD_TO_SD = 1.4826  # MAD of a normal sample x this = its standard deviation


def band(samples, level: float, log: bool = False, axis: int = 0):
    """(low, high) along `axis` of a (resamples, ...) array; non-finite resamples ignored."""
    x = np.asarray(samples, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.where(np.isfinite(x) & ((x > 0) if log else True), np.log(x) if log else x, np.nan)
    centre = np.nanmedian(x, axis=axis)
    scale = MAD_TO_SD * np.nanmedian(np.abs(x - np.expand_dims(centre, axis)), axis=axis)
    z = norm.ppf(0.5 + level / 2.0)
    low, high = centre - z * scale, centre + z * scale
    return (np.exp(low), np.exp(high)) if log else (low, high)


def interval(samples, level: float, log: bool = False) -> Optional[list]:
    """[low, high] of a 1-d sample of bootstrap estimates; None with fewer than 2 usable."""
    x = np.asarray(samples, float)
    usable = np.isfinite(x) & ((x > 0) if log else True)
    if usable.sum() < 2:
        return None
    low, high = band(x[usable], level, log)
    return [float(low), float(high)]
