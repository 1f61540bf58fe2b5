"""Published laws, the tokens-per-parameter rule against Chinchilla's table, and the closed-form
compute-optimal allocation against a numerical minimisation."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from llmexp.scaling import CHINCHILLA, EPOCH, PowerLawAllocation, ScalingError, TokensPerParam, plan, resolve_law

# Hoffmann et al. 2022, Table 3 (approach 1's projections): parameters, FLOPs, tokens.
TABLE_3 = [
    (400e6, 1.92e19, 8.0e9), (1e9, 1.21e20, 20.2e9), (10e9, 1.23e22, 205.1e9), (67e9, 5.76e23, 1.5e12),
    (175e9, 3.85e24, 3.7e12), (280e9, 9.90e24, 5.9e12), (520e9, 3.43e25, 11.0e12), (1e12, 1.27e26, 21.2e12),
    (10e12, 1.30e28, 216.2e12),
]


def test_published_constants():
    assert (CHINCHILLA.E, CHINCHILLA.A, CHINCHILLA.B, CHINCHILLA.alpha, CHINCHILLA.beta) == (1.69, 406.4, 410.7, 0.34, 0.28)
    assert (EPOCH.E, EPOCH.A, EPOCH.B, EPOCH.alpha, EPOCH.beta) == (1.8172, 482.01, 2085.43, 0.3478, 0.3658)


@pytest.mark.parametrize("params, flops, tokens", TABLE_3)
def test_tokens_per_param_rule_reproduces_chinchilla_table_3(params, flops, tokens):
    rule = TokensPerParam(20.0)
    N, D = rule.optimal(flops)
    # Up to 10B the table sits at 20 tokens/param and the rule matches it to the table's own
    # rounding. Beyond, the table drifts to 21-22 tokens/param (approach 1's exponents are
    # 0.50 +- 0.01, not exactly 1/2; the 67B row is also rounded: 6 x 67e9 x 1.5e12 = 6.0e23, not
    # 5.76e23), and the 20x rule stays within 5% of N and 8% of D.
    if params <= 10e9:
        assert N == pytest.approx(params, rel=0.015)
        assert D == pytest.approx(tokens, rel=0.015)
        assert plan(rule, params=params).compute == pytest.approx(flops, rel=0.03)
    else:
        assert N == pytest.approx(params, rel=0.05)
        assert D == pytest.approx(tokens, rel=0.08)
    assert 6 * N * D == pytest.approx(flops)


def test_400m_row_exactly():
    a = plan(TokensPerParam(), params=400e6)
    assert a.tokens == 8.0e9 and f"{a.compute:.3g}" == "1.92e+19"


@pytest.mark.parametrize("law", [CHINCHILLA, EPOCH])
@pytest.mark.parametrize("C", [1e18, 5.76e23, 1e26])
def test_closed_form_optimum_matches_numerical_minimum(law, C):
    best = minimize_scalar(lambda x: law.loss(math.exp(x), C / (6 * math.exp(x))), bounds=(5, 40), method="bounded",
                           options={"xatol": 1e-10})
    N, D = law.optimal(C)
    assert N == pytest.approx(math.exp(best.x), rel=1e-4)
    assert 6 * N * D == pytest.approx(C)


def test_chinchilla_law_at_gopher_compute():
    # Approach 3's fit at Gopher's budget: about 32B parameters on 3T tokens, loss ~1.93.
    N, D = CHINCHILLA.optimal(5.76e23)
    assert N == pytest.approx(3.22e10, rel=0.01) and D == pytest.approx(2.98e12, rel=0.01)
    assert CHINCHILLA.loss(N, D) == pytest.approx(1.9307, abs=1e-3)


@pytest.mark.parametrize("law", [CHINCHILLA, EPOCH, TokensPerParam(25.0), PowerLawAllocation(0.1, 0.52, 1.7, 0.48)])
def test_given_size_or_tokens_inverts_the_allocation(law):
    N, D = law.optimal(1e22)
    assert law.optimal_tokens(N) == pytest.approx(D, rel=1e-9)
    assert law.optimal_params(D) == pytest.approx(N, rel=1e-9)


def test_resolve_law_by_name_and_from_a_fit(tmp_path):
    assert resolve_law("epoch") is EPOCH and resolve_law("tpp", 30.0).ratio == 30.0
    fit = {"parametric": {"reason": "too few runs"},
           "isoflop": {"law": PowerLawAllocation(0.2, 0.5, 0.8, 0.5).to_dict()}}
    (tmp_path / "fit.json").write_text(json.dumps(fit))
    law = resolve_law(str(tmp_path))
    assert isinstance(law, PowerLawAllocation) and law.kN == 0.2 and law.flops == "exact"
    fit["parametric"] = {"law": CHINCHILLA.to_dict()}
    (tmp_path / "fit.json").write_text(json.dumps(fit))
    assert resolve_law(str(tmp_path / "fit.json")).loss(1e9, 2e10) == pytest.approx(CHINCHILLA.loss(1e9, 2e10))
    fit["parametric"]["warnings"] = ["only 6 runs for 5 parameters"]  # then the power laws win
    (tmp_path / "fit.json").write_text(json.dumps(fit))
    assert isinstance(resolve_law(str(tmp_path)), PowerLawAllocation)
    with pytest.raises(ScalingError, match="expected chinchilla, epoch, tpp"):
        resolve_law("kaplan")


def test_loss_is_vectorised():
    N = np.array([1e8, 1e9])
    assert CHINCHILLA.loss(N, 20 * N).shape == (2,)
    assert TokensPerParam().loss(1e9, 2e10) is None
