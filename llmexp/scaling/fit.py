"""Every fit of a study's runs, their bootstrap intervals, the held-out-budget check and the
prediction at a target budget: what `python -m llmexp.scaling fit` prints and writes to fit.json.

All of it in one FLOP convention (llmexp.scaling.flops), chosen by `flops`: the budgets, the
approach-1 and -2 power laws, approach 3's optimum and the prediction.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from llmexp.scaling import downstream, envelope, isoflop_fit, parametric_fit
from llmexp.scaling.errors import ScalingError
from llmexp.scaling.flops import FlopCount, flop_count, optimal_split
from llmexp.scaling.intervals import interval
from llmexp.scaling.isoflop_fit import IsoflopFit
from llmexp.scaling.outliers import outliers
from llmexp.scaling.parametric_fit import ParametricFit, to_law
from llmexp.scaling.results import Results

FIT_FILE = "fit.json"


@dataclass
class StudyFit:
    results: Results  # the runs the fits used (outliers already left out, in results.excluded)
    count: FlopCount
    isoflop: Optional[IsoflopFit]
    isoflop_reason: Optional[str]
    parametric: Optional[ParametricFit]
    parametric_reason: Optional[str]
    level: float
    bootstrap: int
    target: Optional[float] = None
    envelope: Optional[envelope.EnvelopeFit] = None
    envelope_reason: Optional[str] = None
    tasks: Dict[str, downstream.TaskFit] = field(default_factory=dict)
    task_reasons: List[str] = field(default_factory=list)
    holdout: dict = field(default_factory=dict)
    outlier_rule: str = "none"
    tolerance: float = isoflop_fit.TOLERANCE

    @property
    def warnings(self) -> List[str]:
        """Everything that makes the fits untrustworthy: what the planner refuses to plan with."""
        out = [f"approach 2: {w}" for w in (self.isoflop.warnings if self.isoflop else [])]
        return out + [f"approach 3: {w}" for w in (self.parametric.warnings if self.parametric else [])]

    def predict(self, C: float) -> dict:
        """N_opt, D_opt (and loss, from the parametric fit; task scores through it) at budget C
        in the report's FLOP convention, with intervals."""
        out = {"compute": C, "flops": self.count.convention}
        for key, f in (("isoflop", self.isoflop), ("envelope", self.envelope)):
            if f:
                N, D = f.law.optimal(C)
                out[key] = {"params": float(N), "tokens": float(D)}
        if self.isoflop and self.isoflop.boot is not None and len(self.isoflop.boot):
            boot = self.isoflop.boot
            with np.errstate(over="ignore"):
                out["isoflop"]["params_interval"] = interval(np.exp(boot[:, 0] + boot[:, 1] * np.log(C)), self.level, log=True)
                out["isoflop"]["tokens_interval"] = interval(np.exp(boot[:, 2] + boot[:, 3] * np.log(C)), self.level, log=True)
        if self.parametric:
            law = self.parametric.law
            N, D = optimal_split(law, C, self.count)
            entry = {"params": float(N), "tokens": float(D), "loss": float(law.loss(N, D))}
            if self.parametric.boot is not None and len(self.parametric.boot):
                laws = [to_law(theta) for theta in self.parametric.boot]
                opt = np.array([optimal_split(lb, C, self.count) for lb in laws])
                entry["params_interval"] = interval(opt[:, 0], self.level, log=True)
                entry["tokens_interval"] = interval(opt[:, 1], self.level, log=True)
                entry["loss_interval"] = interval([lb.loss(n, d) for lb, (n, d) in zip(laws, opt)], self.level, log=True)
            out["parametric"] = entry
            if self.tasks:
                ci = entry.get("loss_interval")
                out["tasks"] = {t: {"metric": f.metric, "score": float(f.score(entry["loss"])),
                                    # the sigmoid is monotone: the loss interval's ends map to the score's
                                    "score_interval": sorted(float(f.score(x)) for x in ci) if ci else None}
                                for t, f in self.tasks.items()}
        return out

    def to_dict(self) -> dict:
        out = {
            "source": self.results.source,
            "flops": self.count.convention,
            "level": self.level,
            "bootstrap": self.bootstrap,
            "interval": "bootstrap median +- z * 1.4826 MAD (log scale for positive quantities)",
            "outliers": self.outlier_rule,
            "budget_tolerance": self.tolerance,
            "runs": {"used": [p.run for p in self.results.points],
                     "excluded": [{"run": r, "why": why} for r, why in self.results.excluded]},
            "isoflop": self._isoflop_dict() if self.isoflop else {"reason": self.isoflop_reason},
            "parametric": self._parametric_dict() if self.parametric else {"reason": self.parametric_reason},
            "envelope": self._envelope_dict() if self.envelope else {"reason": self.envelope_reason},
            "tasks": {t: vars(f) for t, f in self.tasks.items()},
            "task_reasons": self.task_reasons,
            "holdout": self.holdout,
            "warnings": self.warnings,
        }
        if self.target:
            out["prediction"] = self.predict(self.target)
        return out

    def _isoflop_dict(self) -> dict:
        f = self.isoflop
        names = [p.run for p in self.results.points]
        d = {"law": f.law.to_dict(),
             "minima": [{"budget": m.budget, "compute": m.compute, "runs": m.n_runs, "params": m.params,
                         "tokens": m.tokens, "loss": m.loss, "interior": m.interior} for m in f.minima],
             "excluded_budgets": [{"budget": c, "why": why} for c, why in f.excluded],
             "excluded_runs": [{"run": names[i], "why": why} for i, why in f.excluded_rows],
             "warnings": f.warnings, "bootstrap_failed": f.boot_failed}
        if f.boot is not None and len(f.boot):
            with np.errstate(over="ignore"):  # a wild resample's coefficient: inf, ignored by interval()
                d["intervals"] = {"a": interval(f.boot[:, 1], self.level), "b": interval(f.boot[:, 3], self.level),
                                  "kN": interval(np.exp(f.boot[:, 0]), self.level, log=True),
                                  "kD": interval(np.exp(f.boot[:, 2]), self.level, log=True)}
        return d

    def _parametric_dict(self) -> dict:
        f = self.parametric
        a, b = f.law.exponents
        d = {"law": f.law.to_dict(), "exponents": {"a": a, "b": b}, "objective": f.objective,
             "points": f.n_points, "warnings": f.warnings, "bootstrap_failed": f.boot_failed,
             "residuals": self.residuals().tolist()}
        if f.boot is not None and len(f.boot):
            t = f.boot
            d["intervals"] = {"E": interval(np.exp(t[:, 2]), self.level, log=True),
                              "A": interval(np.exp(t[:, 0]), self.level, log=True),
                              "B": interval(np.exp(t[:, 1]), self.level, log=True),
                              "alpha": interval(t[:, 3], self.level), "beta": interval(t[:, 4], self.level),
                              "a": interval(t[:, 4] / (t[:, 3] + t[:, 4]), self.level),
                              "b": interval(t[:, 3] / (t[:, 3] + t[:, 4]), self.level)}
        return d

    def _envelope_dict(self) -> dict:
        f = self.envelope
        return {"law": f.law.to_dict(), "sizes": f.sizes, "warnings": f.warnings,
                "points": [vars(p) for p in f.points]}

    def residuals(self) -> np.ndarray:
        """log observed - log predicted loss of approach 3 at every run used."""
        _, N, D, L = self.results.arrays()
        return np.log(L) - np.log(self.parametric.law.loss(N, D))


def run_per_token(point, count: FlopCount) -> float:
    """A run's FLOPs per token in the report's convention: its own exact count, or 6N."""
    return point.flops_per_token if count.convention == "exact" else 6.0 * point.params


def run_compute(results: Results, count: FlopCount) -> np.ndarray:
    """Each run's training FLOPs in the report's convention."""
    _, N, D, _ = results.arrays()
    return np.array([p.flops for p in results.points]) if count.convention == "exact" else 6.0 * N * D


def _approach2(results: Results, count: FlopCount, **kw) -> IsoflopFit:
    budget, N, D, L = results.arrays()
    return isoflop_fit.fit(budget, N, D, L, run_compute(results, count), flops=count.convention, **kw)


def holdout_check(results: Results, count: FlopCount, tolerance: float, starts: Optional[int]) -> dict:
    """Refit without the largest budget's runs and predict them: the largest budget's IsoFLOP
    minimum (approach 2) and each held-out run's loss (approach 3)."""
    budget, N, D, L = results.arrays()
    which = isoflop_fit.bins(budget, tolerance)
    if which.max() < 2:
        return {"reason": "needs >= 3 budgets (2 to fit approach 2 on, 1 to predict)"}
    held = which == which.max()
    train = replace(results, points=[p for p, h in zip(results.points, held) if not h])
    out = {"budget": isoflop_fit.bin_budget(budget[held]), "runs": int(held.sum())}
    try:
        full = _approach2(results, count, tolerance=tolerance)
        top = next(m for m in full.minima if m.budget == out["budget"])
        rest = _approach2(train, count, tolerance=tolerance)
        predicted = float(rest.law.optimal(top.compute)[0])
        out["isoflop"] = {"observed_params": top.params, "predicted_params": predicted,
                          "ratio": predicted / top.params}
    except (ScalingError, StopIteration) as err:
        out["isoflop"] = {"reason": str(err) or "the held-out budget has no minimum"}
    try:
        _, n, d, loss = train.arrays()
        law = parametric_fit.fit(n, d, loss, starts=starts).law
        rel = law.loss(N[held], D[held]) / L[held] - 1.0
        out["parametric"] = {"mean_abs_loss_error": float(np.mean(np.abs(rel))), "max_abs_loss_error": float(np.max(np.abs(rel))),
                             "mean_loss_error": float(np.mean(rel)), "law": law.to_dict(),
                             "held_out_runs": [p.run for p, h in zip(results.points, held) if h]}
    except ScalingError as err:
        out["parametric"] = {"reason": str(err)}
    return out


def fit_results(results: Results, *, target: Optional[float] = None, bootstrap: int = 100, seed: int = 0,
                starts: Optional[int] = 20, level: float = 0.95, flops: str = "exact", outlier_rule: str = "none",
                tolerance: float = isoflop_fit.TOLERANCE) -> StudyFit:
    """Approaches 1 (curves), 2 (budgets) and 3 on the usable runs, after the outlier rule. One
    of them failing is recorded with its reason; 2 and 3 both failing is an error naming both."""
    if not 0 < level < 1:
        raise ScalingError(f"interval level {level}: must be in (0, 1)")
    if bootstrap < 0:
        raise ScalingError(f"bootstrap {bootstrap}: must be >= 0")
    if target is not None and not target > 0:
        raise ScalingError(f"target budget {target}: must be > 0")
    if not results.points:
        why = "; ".join(f"{r}: {w}" for r, w in results.excluded[:5]) or "the study has no runs"
        raise ScalingError(f"no usable runs to fit in {results.source} ({why})")
    _, N, D, L = results.arrays()
    dropped = dict(outliers(outlier_rule, N, D, L))
    results = Results([p for i, p in enumerate(results.points) if i not in dropped],
                      results.excluded + [(results.points[i].run, why) for i, why in dropped.items()], results.source)
    _, N, D, L = results.arrays()
    count = flop_count(flops, N, [p.flops_per_token for p in results.points])
    iso = iso_reason = par = par_reason = env = env_reason = None
    try:
        iso = _approach2(results, count, tolerance=tolerance, bootstrap=bootstrap, seed=seed)
    except ScalingError as err:
        iso_reason = str(err)
    try:
        par = parametric_fit.fit(N, D, L, starts=starts, bootstrap=bootstrap, seed=seed)
    except ScalingError as err:
        par_reason = str(err)
    if iso is None and par is None:
        raise ScalingError(f"nothing could be fitted: {iso_reason}; {par_reason}")
    curves = [(p.params, run_per_token(p, count), *p.curve) for p in results.points if p.curve is not None]
    try:
        env = envelope.fit(curves, count) if curves else None
        env_reason = None if curves else "no run has a logged validation curve (metrics.csv val/loss)"
    except ScalingError as err:
        env_reason = str(err)
    tasks, task_reasons = downstream.fit_all(results.points) if par else ({}, [])
    fit = StudyFit(results, count, iso, iso_reason, par, par_reason, level, bootstrap, target, env, env_reason,
                   tasks, task_reasons, holdout_check(results, count, tolerance, starts), outlier_rule, tolerance)
    return fit


def write(fit: StudyFit, folder: Path) -> Path:
    path = Path(folder) / FIT_FILE
    path.write_text(json.dumps(fit.to_dict(), indent=2))
    return path
