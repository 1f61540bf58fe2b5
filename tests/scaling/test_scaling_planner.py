"""The planner: compute, accelerator-hours, size or tokens -> N, D, FLOPs (6ND and exact), loss."""
from __future__ import annotations

import math

import pytest

from llmexp.accelerators import ACCELERATORS
from llmexp.scaling import CHINCHILLA, EPOCH, ScalingError, TokensPerParam, plan
from llmexp.scaling.hparams import DEEPSEEK, batch_sequences, parse_rule
from llmexp.scaling.planner import compute_from_hours, hours_for
from llmexp.scaling.shapes import FAMILIES, candidates


def test_accelerator_hours_use_the_accelerator_table():
    C = compute_from_hours(1000, "h100", 0.4)
    assert C == pytest.approx(1000 * 3600 * ACCELERATORS["h100"].peak_bf16_flops * 0.4)
    assert hours_for(C, "h100", 0.4) == pytest.approx(1000)
    with pytest.raises(ScalingError, match="allowed: a100"):
        compute_from_hours(1, "tpu9", 0.4)


@pytest.mark.parametrize("law", [CHINCHILLA, EPOCH])
def test_budget_plan_with_exact_flops_picks_the_least_loss_shape(law):
    C = 1e21
    a = plan(law, compute=C, family=FAMILIES["llama"], vocab_size=32000)
    s = a.shape
    assert s.flops == pytest.approx(C)  # the shape's tokens are what C buys at its exact FLOPs/token
    assert s.shape.flops_per_token > 6 * s.shape.n  # attention counted
    assert s.loss == pytest.approx(law.loss(s.shape.n, s.tokens))
    nearby = candidates(FAMILIES["llama"], 32000, a.params / 4, a.params * 4)
    assert all(s.loss <= law.loss(c.n, C / c.flops_per_token) + 1e-12 for c in nearby)
    assert a.loss == pytest.approx(law.loss(a.params, a.tokens)) and a.loss <= s.loss + 1e-3


def test_size_and_token_plans_are_the_inverse_of_the_budget_plan():
    a = plan(CHINCHILLA, compute=1e22)
    b = plan(CHINCHILLA, params=a.params)
    c = plan(CHINCHILLA, tokens=a.tokens)
    assert b.tokens == pytest.approx(a.tokens) and b.compute == pytest.approx(1e22)
    assert c.params == pytest.approx(a.params) and c.loss == pytest.approx(a.loss)


def test_tokens_per_param_shape_matches_the_ratio_at_exact_flops():
    a = plan(TokensPerParam(20), compute=1e14, family=FAMILIES["tiny"], vocab_size=4096)
    assert a.loss is None and a.shape.loss is None
    assert a.shape.tokens / a.shape.shape.n == pytest.approx(20, rel=0.25)


def test_plan_needs_exactly_one_input():
    with pytest.raises(ScalingError, match="exactly one"):
        plan(CHINCHILLA, compute=1e20, params=1e9)
    with pytest.raises(ScalingError, match="finite number > 0"):
        plan(CHINCHILLA, compute=math.nan)


def test_hyperparameter_rules():
    assert parse_rule("3e-3", "lr")(1e20) == 3e-3
    assert parse_rule("deepseek", "lr") == DEEPSEEK["lr"]
    # DeepSeek LLM's fits: lr 0.3118 C^-0.125, batch 0.2920 C^0.3271 tokens.
    assert DEEPSEEK["lr"](1e20) == pytest.approx(0.3118 * 1e20**-0.125)
    assert DEEPSEEK["batch_tokens"](1e20) == pytest.approx(0.2920 * 1e20**0.3271)
    assert parse_rule("0.5*C^-0.1", "lr")(1e10) == pytest.approx(0.05)
    for bad in ("fast", "-1", "0*C^2"):
        with pytest.raises(ScalingError, match="expected a positive number"):
            parse_rule(bad, "lr")


@pytest.mark.parametrize("tokens, seq, micro, world, expected", [
    (4096, 256, 8, 1, 16), (5000, 128, 4, 2, 40), (10, 256, 8, 1, 8), (4e6, 2048, 4, 8, 1952)])
def test_batch_in_sequences_is_a_multiple_of_micro_times_devices(tokens, seq, micro, world, expected):
    assert batch_sequences(tokens, seq, micro, world) == expected
