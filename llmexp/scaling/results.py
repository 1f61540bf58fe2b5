"""A study's finished runs as points for the fits, and every run left out with the reason.

A run counts when its summary.json says finished with a finite validation loss, it trained the
tokens and parameters the study designed, and its loss fell (a final loss at or above the
loss at step 0, or above ln(vocab) -- worse than guessing uniformly -- means it diverged).
Each run's validation curve (metrics.csv's val/loss against the tokens seen) feeds approach 1.
lm-eval scores come from <run>/eval/results.json (an eval stage), else from the last
<run>/eval/step-*/results.json (the eval group run during training).
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from llmexp.metrics_csv import read_metrics
from llmexp.scaling.errors import ScalingError
from llmexp.scaling.study import Study

# The headline metric of an lm-eval task, in order of preference.
PREFERRED_METRICS = ("acc_norm,none", "acc,none", "exact_match,strict-match", "exact_match,none", "f1,none")


@dataclass
class Point:
    run: str
    budget: Optional[float]  # the study's nominal budget (groups runs for approach 2)
    params: float
    tokens: float
    flops: float
    loss: float
    scores: Dict[str, Tuple[str, float]] = field(default_factory=dict)  # task -> (metric, value)
    curve: Optional[Tuple[np.ndarray, np.ndarray]] = None  # (tokens, validation loss) along the run

    @property
    def flops_per_token(self) -> float:
        return self.flops / self.tokens


@dataclass
class Results:
    points: List[Point]
    excluded: List[Tuple[str, str]]  # (run, why)
    source: str

    def arrays(self) -> tuple[np.ndarray, ...]:
        """budget, N, D, loss as arrays (budget NaN where unknown)."""
        p = self.points
        return (np.array([x.budget if x.budget is not None else np.nan for x in p], float),
                np.array([x.params for x in p], float), np.array([x.tokens for x in p], float),
                np.array([x.loss for x in p], float))


def validation_curve(run_dir: Path, tokens_per_step: float) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """val/loss after step 0 against tokens seen, from the run's metrics.csv."""
    rows = [(step, v) for step, v in read_metrics(run_dir / "metrics.csv").get("val/loss", []) if step > 0]
    if not rows:
        return None
    steps, loss = np.array(rows, float).T
    return steps * tokens_per_step, loss


def eval_results(run_dir: Path) -> Optional[Path]:
    final = run_dir / "eval" / "results.json"
    if final.is_file():
        return final
    steps = sorted((run_dir / "eval").glob("step-*/results.json"))
    return steps[-1] if steps else None


def lm_eval_scores(path: Path) -> Dict[str, Tuple[str, float]]:
    """{task: (metric, value)} from an lm-eval results.json (its "results" section)."""
    scores = {}
    for task, metrics in json.loads(path.read_text()).get("results", {}).items():
        numeric = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and "stderr" not in k}
        metric = next((m for m in PREFERRED_METRICS if m in numeric), next(iter(sorted(numeric)), None))
        if metric is not None:
            scores[task] = (metric, float(numeric[metric]))
    return scores


def _why_excluded(summary: dict, designed_tokens: int, designed_params: int, vocab: int) -> Optional[str]:
    status = summary.get("status")
    if status != "finished":
        return f"status {status!r} (not finished)"
    loss = summary.get("val_loss")
    if not isinstance(loss, (int, float)) or not math.isfinite(loss):
        return f"non-finite validation loss ({loss})"
    initial = summary.get("initial_val_loss")
    if isinstance(initial, (int, float)) and math.isfinite(initial) and loss >= initial:
        return f"diverged: validation loss {loss:.3f} >= {initial:.3f} at step 0"
    if loss > math.log(vocab):
        return f"diverged: validation loss {loss:.3f} > ln(vocab) = {math.log(vocab):.3f}"
    tokens = summary.get("tokens") or 0
    if tokens < designed_tokens:
        return f"stopped early: trained {tokens:,} of {designed_tokens:,} tokens"
    if summary.get("params_total") != designed_params:
        return f"trained {summary.get('params_total')} parameters, the study designed {designed_params:,}"
    return None


def _chain_start(study: Study, run) -> Optional[float]:
    """The step-0 validation loss of a cooldown chain: a link resumed into its own folder has
    none of its own, the chain's first trunk has."""
    while run.after:
        run = study.run(run.after)
    try:
        return json.loads((study.run_dir(run) / "summary.json").read_text()).get("initial_val_loss")
    except (OSError, json.JSONDecodeError):
        return None


def collect(study: Study) -> Results:
    points, excluded = [], []
    for run in study.runs:
        if run.role == "trunk":  # a cooldown chain's stable phase: the branches are the points
            continue
        folder = study.run_dir(run)
        path = folder / "summary.json"
        if not path.is_file():
            excluded.append((run.id, "did not finish (no summary.json)" if folder.is_dir() else "not run"))
            continue
        try:
            summary = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            excluded.append((run.id, f"unreadable summary.json: {err}"))
            continue
        if run.after:
            summary = {**summary, "initial_val_loss": _chain_start(study, run)}
        why = _why_excluded(summary, run.tokens, run.params, study.vocab_size)
        if why:
            excluded.append((run.id, why))
            continue
        evals = eval_results(folder)
        scores = lm_eval_scores(evals) if evals else {}
        curve = validation_curve(folder, run.tokens / run.steps)
        points.append(Point(run.id, run.budget, float(summary["params_total"]), float(summary["tokens"]),
                            float(summary.get("total_flops") or run.flops), float(summary["val_loss"]), scores, curve))
    return Results(points, excluded, str(study.root))


def from_csv(path: Path) -> Results:
    """Runs from elsewhere: a CSV with columns params, tokens, loss and optionally budget, flops, run."""
    path = Path(path)
    if not path.is_file():
        raise ScalingError(f"{path}: no such file")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    missing = {"params", "tokens", "loss"} - set(rows[0] if rows else {})
    if missing:
        raise ScalingError(f"{path}: needs columns params, tokens, loss (missing {', '.join(sorted(missing))})")
    points, excluded = [], []
    for i, row in enumerate(rows):
        name = row.get("run") or f"row {i + 2}"
        try:
            N, D, loss = float(row["params"]), float(row["tokens"]), float(row["loss"])
            budget = float(row["budget"]) if row.get("budget") else None
            flops = float(row["flops"]) if row.get("flops") else 6.0 * N * D
        except ValueError as err:
            excluded.append((name, f"not a number: {err}"))
            continue
        if not all(math.isfinite(v) and v > 0 for v in (N, D, loss)):
            excluded.append((name, f"non-finite or non-positive params/tokens/loss ({N}, {D}, {loss})"))
            continue
        points.append(Point(name, budget, N, D, flops, loss))
    return Results(points, excluded, str(path))
