"""Loss -> task accuracy, the second step of OLMo's ladder (Bhagia et al. 2024): step 1 is the
loss law L(N, D) (approach 3); step 2 maps loss to a benchmark's score with a sigmoid,

    acc(L) = low + (high - low) / (1 + exp(k (L - L0)))      (k > 0: lower loss, higher score)

fitted per task to the runs that have lm-eval scores. Chaining them predicts the score of the
compute-optimal model at a budget nobody trained. `low` is bounded by chance when the task
has one (the lowest score seen otherwise), `high` by 1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np
from scipy.optimize import curve_fit

from llmexp.scaling.errors import ScalingError

MIN_RUNS = 5  # four parameters


def sigmoid(L, low, high, k, L0):
    return low + (high - low) / (1.0 + np.exp(np.clip(k * (np.asarray(L, float) - L0), -60, 60)))


@dataclass
class TaskFit:
    task: str
    metric: str
    low: float
    high: float
    k: float
    L0: float
    runs: int
    rmse: float

    def score(self, L):
        return sigmoid(L, self.low, self.high, self.k, self.L0)


def fit_task(task: str, metric: str, loss, score) -> TaskFit:
    loss, score = np.asarray(loss, float), np.asarray(score, float)
    if len(loss) < MIN_RUNS:
        raise ScalingError(f"{task}: {len(loss)} runs with scores, the loss -> {metric} sigmoid needs >= {MIN_RUNS}")
    lo0, hi0 = float(score.min()), float(score.max())
    p0 = [lo0, min(1.0, hi0 + 0.05), 4.0 / max(np.ptp(loss), 1e-3), float(np.median(loss))]
    bounds = ([0.0, lo0, 1e-3, loss.min() - 5 * np.ptp(loss) - 1], [lo0 + 1e-9, 1.0, 1e3, loss.max() + 5 * np.ptp(loss) + 1])
    try:
        theta, _ = curve_fit(sigmoid, loss, score, p0=p0, bounds=bounds, maxfev=20000)
    except RuntimeError as err:
        raise ScalingError(f"{task}: the loss -> {metric} sigmoid did not converge ({err})") from None
    rmse = float(np.sqrt(np.mean((sigmoid(loss, *theta) - score) ** 2)))
    return TaskFit(task, metric, *(float(t) for t in theta), runs=len(loss), rmse=rmse)


def fit_all(points) -> Tuple[Dict[str, TaskFit], List[str]]:
    """A TaskFit per task scored in enough runs; the reasons for the others."""
    tasks = sorted({t for p in points for t in p.scores})
    fits, reasons = {}, []
    for task in tasks:
        scored = [p for p in points if task in p.scores]
        try:
            fits[task] = fit_task(task, scored[0].scores[task][0], [p.loss for p in scored],
                                  [p.scores[task][1] for p in scored])
        except ScalingError as err:
            reasons.append(str(err))
    return fits, reasons
