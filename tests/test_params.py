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


# Open-model presets (their own vocabulary is the preset's model.vocab_size): the exact count of
# the hub checkpoint's distinct tensors, and the model card's rounded (total, non-embedding).
OPEN_MODELS = {
    "llama3_2_1b": (1_235_814_400, None),
    "llama3_1_8b": (8_030_261_248, None),
    "qwen2_5_0_5b": (494_032_768, (0.49e9, 0.36e9)),
    "qwen2_5_7b": (7_615_616_512, (7.61e9, 6.53e9)),
    "qwen3_0_6b": (596_049_920, (0.6e9, 0.44e9)),  # the hub's 751,632,384 stores the tied lm_head again
    "smollm2_135m": (134_515_008, None),
    "mistral_7b": (7_241_732_096, None),
}


@pytest.mark.parametrize("preset", sorted(OPEN_MODELS))
def test_open_model_presets_have_the_published_counts_and_transformers_agrees(preset):
    from transformers import AutoModelForCausalLM

    from llmexp.interop.hf import hf_config

    cfg = llmexp.compose([f"model={preset}"])
    plan = llmexp.derive(cfg)
    exact, card = OPEN_MODELS[preset]
    assert plan.params_total == exact
    if card is not None:
        params = count_params(cfg.model, plan.vocab_size)
        total, non_embedding = card  # given to 0.01B: within that of ours
        assert abs(params.total - total) < 0.01e9 and abs(params.non_embedding - non_embedding) < 0.01e9
    shape = model_shape(cfg, plan.vocab_size)
    with torch.device("meta"):  # shapes only: transformers' own class of the family, and llmexp's
        theirs = AutoModelForCausalLM.from_config(hf_config(shape, cfg.model.family))
        ours = Llama(shape)
    assert sum(p.numel() for p in theirs.parameters()) == exact
    assert sum({id(p): p.numel() for p in ours.parameters()}.values()) == exact


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
