"""Both fits on a study's runs, their bootstrap intervals, and the prediction at a target
budget: what `python -m llmexp.scaling fit` prints and writes to fit.json."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from llmexp.scaling import isoflop_fit, parametric_fit
from llmexp.scaling.errors import ScalingError
from llmexp.scaling.isoflop_fit import IsoflopFit
from llmexp.scaling.parametric_fit import ParametricFit, to_law
from llmexp.scaling.results import Results

FIT_FILE = "fit.json"


def interval(samples, level: float) -> Optional[list]:
    samples = np.asarray(samples, float)
    samples = samples[np.isfinite(samples)]
    if samples.size < 2:
        return None
    tail = 50.0 * (1.0 - level)
    return [float(x) for x in np.percentile(samples, [tail, 100.0 - tail])]


@dataclass
class StudyFit:
    results: Results
    isoflop: Optional[IsoflopFit]
    isoflop_reason: Optional[str]
    parametric: Optional[ParametricFit]
    parametric_reason: Optional[str]
    level: float
    bootstrap: int
    target: Optional[float] = None

    def predict(self, C: float) -> dict:
        """N_opt, D_opt (and loss, from the parametric fit) at budget C, with intervals."""
        out = {"compute": C}
        if self.isoflop:
            law, boot = self.isoflop.law, self.isoflop.boot
            N, D = law.optimal(C)
            entry = {"params": float(N), "tokens": float(D), "flops": law.flops}
            if boot is not None and len(boot):
                entry["params_interval"] = interval(np.exp(boot[:, 0] + boot[:, 1] * np.log(C)), self.level)
                entry["tokens_interval"] = interval(np.exp(boot[:, 2] + boot[:, 3] * np.log(C)), self.level)
            out["isoflop"] = entry
        if self.parametric:
            law = self.parametric.law
            N, D = law.optimal(C)
            entry = {"params": float(N), "tokens": float(D), "loss": float(law.loss(N, D)), "flops": law.flops}
            if self.parametric.boot is not None and len(self.parametric.boot):
                laws = [to_law(theta) for theta in self.parametric.boot]
                opt = np.array([law_b.optimal(C) for law_b in laws])
                entry["params_interval"] = interval(opt[:, 0], self.level)
                entry["tokens_interval"] = interval(opt[:, 1], self.level)
                entry["loss_interval"] = interval([lb.loss(n, d) for lb, (n, d) in zip(laws, opt)], self.level)
            out["parametric"] = entry
        return out

    def to_dict(self) -> dict:
        out = {
            "source": self.results.source,
            "level": self.level,
            "bootstrap": self.bootstrap,
            "runs": {"used": [p.run for p in self.results.points],
                     "excluded": [{"run": r, "why": why} for r, why in self.results.excluded]},
            "isoflop": self._isoflop_dict() if self.isoflop else {"reason": self.isoflop_reason},
            "parametric": self._parametric_dict() if self.parametric else {"reason": self.parametric_reason},
        }
        if self.target:
            out["prediction"] = self.predict(self.target)
        return out

    def _isoflop_dict(self) -> dict:
        f = self.isoflop
        d = {"law": f.law.to_dict(),
             "minima": [{"budget": m.budget, "runs": m.n_runs, "params": m.params, "tokens": m.tokens,
                         "loss": m.loss, "interior": m.interior} for m in f.minima],
             "excluded_budgets": [{"budget": c, "why": why} for c, why in f.excluded],
             "warnings": f.warnings, "bootstrap_failed": f.boot_failed}
        if f.boot is not None and len(f.boot):
            with np.errstate(over="ignore"):  # a wild resample's coefficient: inf, dropped by interval()
                d["intervals"] = {"a": interval(f.boot[:, 1], self.level), "b": interval(f.boot[:, 3], self.level),
                                  "kN": interval(np.exp(f.boot[:, 0]), self.level),
                                  "kD": interval(np.exp(f.boot[:, 2]), self.level)}
        return d

    def _parametric_dict(self) -> dict:
        f = self.parametric
        a, b = f.law.exponents
        d = {"law": f.law.to_dict(), "exponents": {"a": a, "b": b}, "objective": f.objective,
             "points": f.n_points, "warnings": f.warnings, "bootstrap_failed": f.boot_failed}
        if f.boot is not None and len(f.boot):
            t = f.boot
            d["intervals"] = {"E": interval(np.exp(t[:, 2]), self.level), "A": interval(np.exp(t[:, 0]), self.level),
                              "B": interval(np.exp(t[:, 1]), self.level), "alpha": interval(t[:, 3], self.level),
                              "beta": interval(t[:, 4], self.level),
                              "a": interval(t[:, 4] / (t[:, 3] + t[:, 4]), self.level),
                              "b": interval(t[:, 3] / (t[:, 3] + t[:, 4]), self.level)}
        return d


def fit_results(results: Results, *, target: Optional[float] = None, bootstrap: int = 100, seed: int = 0,
                starts: Optional[int] = 20, level: float = 0.95, flops: str = "exact") -> StudyFit:
    """Approach 2 (needs budgets) and approach 3 on the usable runs. One of them failing is
    recorded with its reason; both failing is an error that names both reasons."""
    if not 0 < level < 1:
        raise ScalingError(f"interval level {level}: must be in (0, 1)")
    if bootstrap < 0:
        raise ScalingError(f"bootstrap {bootstrap}: must be >= 0")
    if target is not None and not target > 0:
        raise ScalingError(f"target budget {target}: must be > 0")
    if not results.points:
        why = "; ".join(f"{r}: {w}" for r, w in results.excluded[:5]) or "the study has no runs"
        raise ScalingError(f"no usable runs to fit in {results.source} ({why})")
    budget, N, D, L = results.arrays()
    iso = iso_reason = par = par_reason = None
    if np.isnan(budget).any():
        iso_reason = "some runs have no budget: approach 2 needs each run's IsoFLOP budget"
    else:
        try:
            iso = isoflop_fit.fit(budget, N, D, L, bootstrap=bootstrap, seed=seed, flops=flops)
        except ScalingError as err:
            iso_reason = str(err)
    try:
        par = parametric_fit.fit(N, D, L, starts=starts, bootstrap=bootstrap, seed=seed)
    except ScalingError as err:
        par_reason = str(err)
    if iso is None and par is None:
        raise ScalingError(f"nothing could be fitted: {iso_reason}; {par_reason}")
    return StudyFit(results, iso, iso_reason, par, par_reason, level, bootstrap, target)


def write(fit: StudyFit, folder: Path) -> Path:
    path = Path(folder) / FIT_FILE
    path.write_text(json.dumps(fit.to_dict(), indent=2))
    return path
