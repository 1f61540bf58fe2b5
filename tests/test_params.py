"""Parameter counts of every preset: published figures, and the real network agrees."""
from __future__ import annotations

import pytest
import torch

import llmexp
from llmexp.plan import count_params
from llmexp.stages.base import model_shape
from llmexp.models import Llama

# Published totals (Meta's model cards / Hugging Face configs) for the vocabularies they used.
PUBLISHED = {
    ("7b", 32000): 6_738_415_616,  # Llama-2-7B
    ("13b", 32000): 13_015_864_320,  # Llama-2-13B
    ("70b", 32000): 68_976_648_192,  # Llama-2-70B
    ("70b", 128256): 70_553_706_496,  # Llama-3-70B
    ("1b", 128256): 1_235_814_400,  # Llama-3.2-1B
    ("3b", 128256): 3_212_749_824,  # Llama-3.2-3B
}


@pytest.mark.parametrize("preset,vocab", sorted(PUBLISHED))
def test_published_parameter_counts(preset, vocab):
    cfg = llmexp.compose([f"model={preset}", f"model.vocab_size={vocab}"])
    assert llmexp.derive(cfg).params_total == PUBLISHED[(preset, vocab)]


def test_7b_with_a_32k_bpe_is_llama2_7b():
    assert llmexp.derive(llmexp.compose(["model=7b", "tokenizer=bpe_32k"])).params_total == 6_738_415_616


@pytest.mark.parametrize("preset", ["tiny", "125m", "350m"])
def test_plan_counts_what_the_network_has(preset):
    cfg = llmexp.compose([f"model={preset}"])
    plan = llmexp.derive(cfg)
    with torch.device("meta"):  # no memory: only shapes
        model = Llama(model_shape(cfg, plan.vocab_size))
    unique = {id(p): p.numel() for p in model.parameters()}
    assert sum(unique.values()) == plan.params_total
    assert plan.params_total == count_params(cfg.model, plan.vocab_size).total


def test_gpt3_small_shape_is_about_125m_params():
    plan = llmexp.derive(llmexp.compose(["model=125m", "tokenizer=gpt2"]))
    assert 120e6 < plan.params_total < 130e6
