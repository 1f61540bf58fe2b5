"""Scaling laws: the loss L(N, D) of N parameters trained on D tokens, or the compute-optimal
split of a budget C into N and D.

Published laws use C = 6ND (Kaplan et al. 2020): `optimal(C)` splits C that way. A law fitted
by a study (approaches 1 and 2) is in the FLOP convention its report chose, and says so in
`flops`. Every law carries its provenance (`source`) and, where one is known, a `caveat` that
the planner prints.

The default is Epoch AI's replication of Chinchilla's approach 3 (Besiroglu et al. 2024): the
paper's own rounded constants (`chinchilla`) do not fit the paper's data and put 92.6 tokens per
parameter at Chinchilla's budget of 5.76e23 FLOPs, where Chinchilla itself trained 70B
parameters on 1.4T tokens (20 per parameter); Epoch's refit gives 72B on 1.3T (18.4).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import List, Optional, Union

import numpy as np

from llmexp.scaling.errors import ScalingError


@dataclass(frozen=True)
class ParametricLaw:
    """L(N, D) = E + A / N**alpha + B / D**beta (Hoffmann et al. 2022, eq. 2)."""

    name: str
    E: float
    A: float
    B: float
    alpha: float
    beta: float
    source: str = ""
    flops: str = "6ND"
    caveat: str = ""

    def loss(self, N, D):
        return self.E + self.A / np.power(N, self.alpha) + self.B / np.power(D, self.beta)

    @property
    def _G(self) -> float:
        return (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))

    @property
    def exponents(self) -> tuple[float, float]:
        """(a, b) of N_opt ~ C**a, D_opt ~ C**b."""
        s = self.alpha + self.beta
        return self.beta / s, self.alpha / s

    def optimal(self, C):
        """argmin L subject to 6ND = C, in closed form (Hoffmann et al. 2022, eq. 4)."""
        a, _ = self.exponents
        N = self._G * np.power(np.asarray(C, float) / 6.0, a)
        return N, np.asarray(C, float) / (6.0 * N)

    def optimal_tokens(self, N):
        """D such that (N, D) is compute-optimal: inverts N_opt(C)."""
        a, _ = self.exponents
        C6 = np.power(np.asarray(N, float) / self._G, 1.0 / a)
        return C6 / np.asarray(N, float)

    def optimal_params(self, D):
        """N such that (N, D) is compute-optimal: inverts D_opt(C)."""
        _, b = self.exponents
        C6 = np.power(np.asarray(D, float) * self._G, 1.0 / b)
        return C6 / np.asarray(D, float)

    def to_dict(self) -> dict:
        return {"kind": "parametric", **asdict(self)}


@dataclass(frozen=True)
class TokensPerParam:
    """D = ratio * N at every scale; with C = 6ND, N = sqrt(C / (6 ratio))."""

    ratio: float = 20.0
    name: str = "tpp"
    source: str = "Hoffmann et al. 2022: ~20 tokens per parameter"
    flops: str = "6ND"
    caveat: str = ("a rule of thumb from Chinchilla's data and tokenizer; it predicts no loss, and the ratio itself "
                   "falls slowly with compute in Epoch's refit (21.6 at 1e21, 18.4 at 5.76e23, 16.1 at 1e26 FLOPs)")

    def loss(self, N, D):
        return None

    def optimal(self, C):
        N = np.sqrt(np.asarray(C, float) / (6.0 * self.ratio))
        return N, self.ratio * N

    def optimal_tokens(self, N):
        return self.ratio * np.asarray(N, float)

    def optimal_params(self, D):
        return np.asarray(D, float) / self.ratio

    def to_dict(self) -> dict:
        return {"kind": "tokens_per_param", **asdict(self)}


@dataclass(frozen=True)
class PowerLawAllocation:
    """N_opt = kN * C**a and D_opt = kD * C**b: IsoFLOP minima fitted across budgets (approach 2)."""

    kN: float
    a: float
    kD: float
    b: float
    name: str = "isoflop"
    source: str = ""
    flops: str = "exact"  # the study's budgets count attention (llmexp.plan.flops_per_token)
    caveat: str = ""

    def loss(self, N, D):
        return None

    def optimal(self, C):
        C = np.asarray(C, float)
        return self.kN * np.power(C, self.a), self.kD * np.power(C, self.b)

    def optimal_tokens(self, N):
        C = np.power(np.asarray(N, float) / self.kN, 1.0 / self.a)
        return self.kD * np.power(C, self.b)

    def optimal_params(self, D):
        C = np.power(np.asarray(D, float) / self.kD, 1.0 / self.b)
        return self.kN * np.power(C, self.a)

    def to_dict(self) -> dict:
        return {"kind": "power_law", **asdict(self)}


Law = Union[ParametricLaw, TokensPerParam, PowerLawAllocation]

CHINCHILLA = ParametricLaw(
    "chinchilla", E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28,
    source="Hoffmann et al. 2022, approach 3 (the paper's rounded constants)",
    caveat=("Besiroglu et al. 2024 showed these constants do not fit the paper's own runs: they give ~93 tokens/param "
            "at 5.76e23 FLOPs (Chinchilla trained 70B on 1.4T, 20/param) and ~240 at 1e28; prefer --law epoch"),
)
EPOCH = ParametricLaw(
    "epoch", E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658,
    source="Besiroglu et al. 2024 (Epoch AI), refit of Chinchilla's approach 3 on 240 runs extracted from its figure 4",
    caveat=("fitted on Chinchilla's MassiveText runs with its tokenizer (up to 16B parameters): the optimum's "
            "exponents transfer better than the constants or the predicted loss"),
)
NAMED = {"chinchilla": CHINCHILLA, "epoch": EPOCH}
DEFAULT_LAW = "epoch"


KINDS = {"parametric": ParametricLaw, "power_law": PowerLawAllocation, "tokens_per_param": TokensPerParam}


def law_from_dict(d: dict) -> Law:
    """The inverse of a law's to_dict()."""
    if d.get("kind") not in KINDS:
        raise ScalingError(f"law kind {d.get('kind')!r}: expected {', '.join(KINDS)}")
    return KINDS[d["kind"]](**{k: v for k, v in d.items() if k != "kind"})


@dataclass(frozen=True)
class ResolvedLaw:
    law: Law
    warnings: List[str]  # a study fit's warnings (empty for the published laws)


def resolve_law(spec: str, tokens_per_param: float = 20.0) -> Law:
    """The law `spec` names; a study fit's warnings are checked by `resolve_law_checked`."""
    return resolve_law_checked(spec, tokens_per_param).law


def resolve_law_checked(spec: str, tokens_per_param: float = 20.0) -> ResolvedLaw:
    """A law by name (chinchilla, epoch, tpp) or a study's fit.json / folder. Of a study: its
    parametric fit when that has no warnings, else its IsoFLOP power laws when those have none;
    when both carry warnings, the parametric fit (else the power laws) with all the warnings."""
    if spec == "tpp":
        return ResolvedLaw(TokensPerParam(tokens_per_param), [])
    if spec in NAMED:
        return ResolvedLaw(NAMED[spec], [])
    path = Path(spec)
    if path.is_dir():
        path = path / "fit.json"
    if not path.is_file():
        raise ScalingError(f"--law {spec!r}: expected chinchilla, epoch, tpp, or a fit.json / study folder")
    try:
        fit = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ScalingError(f"--law {spec!r}: {path} is not a fit.json ({err})") from None
    if not isinstance(fit, dict):
        raise ScalingError(f"--law {spec!r}: {path} is not a fit.json (a JSON object with 'parametric'/'isoflop')")
    entries = [(fit.get(key) or {}, label) for key, label in (("parametric", "approach 3"), ("isoflop", "approach 2"))]
    fitted = [(e, label) for e, label in entries if e.get("law")]
    if not fitted:
        raise ScalingError(f"{path}: holds no fitted law (see its 'reason' fields)")
    for entry, _ in fitted:
        if not entry.get("warnings"):
            return ResolvedLaw(_with_source(_law_in(entry, path), path), [])
    warnings = [f"{label}: {w}" for e, label in fitted for w in e["warnings"]]
    return ResolvedLaw(_with_source(_law_in(fitted[0][0], path), path), warnings)


def _law_in(entry: dict, path: Path) -> Law:
    try:
        return law_from_dict(entry["law"])
    except (TypeError, AttributeError) as err:  # a hand-edited or foreign JSON file
        raise ScalingError(f"{path}: its law is not one llmexp wrote ({err})") from None


def _with_source(law: Law, path: Path) -> Law:
    return replace(law, source=f"{law.source}, {path}")


def law_loss(law: Law, N: float, D: float) -> Optional[float]:
    value = law.loss(N, D)
    return None if value is None or not math.isfinite(float(value)) else float(value)
