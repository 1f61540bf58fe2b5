"""Learning-rate schedules and weight-decay groups."""
from __future__ import annotations

import pytest

from llmexp.config.schema import OptimizerConfig
from llmexp.models import Llama, LlamaShape
from llmexp.optim import lr_multiplier, param_groups


def _curve(total: int, **kw) -> list[float]:
    cfg = OptimizerConfig(**kw)
    return [lr_multiplier(s, total, cfg) for s in range(total)]


def test_warmup_is_linear_then_cosine_reaches_the_floor():
    c = _curve(100, schedule="cosine", warmup_steps=10, min_lr_ratio=0.1)
    assert c[0] == pytest.approx(0.1) and c[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(c[10:], c[11:]))
    assert c[-1] == pytest.approx(0.1, abs=0.01)


def test_linear_and_constant():
    assert _curve(50, schedule="linear", warmup_steps=0, min_lr_ratio=0.0)[-1] == pytest.approx(0.02, abs=0.03)
    assert set(_curve(50, schedule="constant", warmup_steps=5)[5:]) == {1.0}


def test_wsd_holds_then_decays_in_the_last_fraction():
    c = _curve(100, schedule="wsd", warmup_steps=10, decay_fraction=0.2, min_lr_ratio=0.0)
    assert set(c[10:80]) == {1.0}
    assert all(a > b for a, b in zip(c[80:], c[81:])) and c[-1] == pytest.approx(0.0)


def test_no_weight_decay_on_norms_and_embeddings():
    model = Llama(LlamaShape(64, 2, 32, 4, 2, 64, 16, tie_embeddings=True))
    decay, no_decay = param_groups(model, 0.1)
    decayed = {id(p) for p in decay["params"]}
    assert id(model.tok_embeddings.weight) not in decayed  # tied output too
    assert all(id(p) not in decayed for n, p in model.named_parameters() if "norm" in n)
    assert id(model.layers[0].attention.wq.weight) in decayed
    assert len(decay["params"]) + len(no_decay["params"]) == len({id(p) for p in model.parameters()})
