"""Shapes for a target N: the families reproduce the shipped presets, and an emitted model
config is a `model` llmexp composes, with the exact N llmexp plans."""
from __future__ import annotations

import math

import pytest

import llmexp
from llmexp.plan import count_params
from llmexp.scaling import ScalingError
from llmexp.scaling.shapes import ASPECT_RANGE, FAMILIES, candidates, family, shape_for_params, write_model_yaml


@pytest.mark.parametrize("preset, tokenizer, fam", [("tiny", "bpe", "tiny"), ("7b", "bpe_32k", "llama"),
                                                     ("13b", "bpe_32k", "llama")])
def test_families_reproduce_the_presets_from_their_parameter_count(preset, tokenizer, fam):
    cfg = llmexp.compose([f"model={preset}", f"tokenizer={tokenizer}"])
    n = llmexp.derive(cfg).params_total
    shape = shape_for_params(n, FAMILIES[fam], cfg.tokenizer.vocab_size)
    m = cfg.model
    got = shape.model
    assert (got.n_layers, got.d_model, got.n_heads, got.n_kv_heads or got.n_heads, got.ffn_dim, got.tie_embeddings) == \
           (m.n_layers, m.d_model, m.n_heads, m.n_kv_heads or m.n_heads, m.ffn_dim, m.tie_embeddings)
    assert shape.n == n


@pytest.mark.parametrize("fam, vocab, target", [(f, v, t) for f, v in (("gpt", 50257), ("llama", 32000))
                                                 for t in (1e8, 3e8, 1e9, 7e9, 7e10, 1e12)]
                         + [("tiny", 4096, t) for t in (3e5, 3e6, 3e7)] + [("micro", 1024, t) for t in (5e4, 3e5, 3e6)])
def test_nearest_shape_is_close_and_parallel_friendly(fam, vocab, target):
    """Heads 1, 2, 4 or a multiple of 8 (multiples of 8 from 1e8 parameters on), KV heads that
    divide them, head_dim 64/128 in the production families, d/L in the published range."""
    f = FAMILIES[fam]
    shape = shape_for_params(target, f, vocab)
    smallest = count_params(f.model(f.smallest_width, 1), vocab).total
    if target > 2 * smallest:  # below 1e9 the grid of 8-head multiples is coarser
        assert abs(math.log(shape.n / target)) < math.log(1.05 if target >= 1e9 else 1.6)
    m = shape.model
    assert m.n_heads * f.head_dim == m.d_model
    assert m.n_heads in (1, 2, 4) or m.n_heads % 8 == 0
    if target >= 1e8:
        assert m.n_heads % 8 == 0
    assert m.n_heads % m.n_kv_heads == 0
    if fam in ("gpt", "llama"):
        assert f.head_dim in (64, 128)
    aspect = m.d_model / m.n_layers
    assert ASPECT_RANGE[0] <= aspect <= ASPECT_RANGE[1] or m.n_layers == 1
    assert f.aspect / f.aspect_band <= aspect <= f.aspect * f.aspect_band or m.n_layers == 1
    assert m.ffn_dim % f.ffn_multiple == 0 and m.ffn_dim >= 8 * m.d_model / 3


def test_cpu_families_refuse_production_sizes():
    with pytest.raises(ScalingError, match="use --family gpt or llama"):
        shape_for_params(7e9, FAMILIES["tiny"], 4096)


def test_no_shape_nearer_than_the_chosen_one():
    f, vocab, target = FAMILIES["tiny"], 4096, 2.5e6
    best = shape_for_params(target, f, vocab)
    for s in candidates(f, vocab, target / 2, target * 2):
        assert abs(math.log(best.n / target)) <= abs(math.log(s.n / target)) + 1e-12


def test_emitted_model_config_composes_with_the_exact_parameter_count(tmp_path):
    shape = shape_for_params(1.5e6, FAMILIES["tiny"], 4096)
    write_model_yaml(tmp_path, "mine", shape.model, "a test shape")
    cfg = llmexp.compose(["model=mine", "trainer.max_steps=10"], config_dirs=[tmp_path])
    plan = llmexp.derive(cfg)
    assert cfg.model.d_model == shape.model.d_model and plan.params_total == shape.n
    assert plan.flops_per_token == shape.flops_per_token
    assert (tmp_path / "model" / "mine.yaml").read_text().startswith("# a test shape\n")


def test_bad_targets_and_families():
    with pytest.raises(ScalingError, match="must be a finite number > 0"):
        shape_for_params(-5, FAMILIES["tiny"], 4096)
    with pytest.raises(ScalingError, match="allowed: tiny, micro, gpt, llama"):
        family("mamba")
