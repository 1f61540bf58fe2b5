"""Model families as data: random small Llama-3 (llama3 RoPE), Qwen2, Qwen3 and Mistral models
built by transformers itself import into llmexp, export back and round-trip with fp32 logits
identical to transformers' own (max |diff| = 0)."""
from __future__ import annotations

import json

import pytest
import torch

from llmexp.interop.hf import save_hf_model
from llmexp.models.hf import load_hf_model

COMMON = dict(vocab_size=211, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-6, initializer_range=0.3)
FAMILIES = {
    # Llama-3.1/3.2: llama3 RoPE scaling, theta 500k
    "llama3": ("LlamaConfig", "LlamaForCausalLM", dict(rope_parameters={
        "rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 64})),
    "llama_linear_bias": ("LlamaConfig", "LlamaForCausalLM", dict(attention_bias=True, rope_parameters={
        "rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0})),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", dict(rope_parameters={"rope_type": "default", "rope_theta": 1e6})),
    "qwen2_yarn": ("Qwen2Config", "Qwen2ForCausalLM", dict(rope_parameters={
        "rope_type": "yarn", "rope_theta": 1e6, "factor": 4.0, "original_max_position_embeddings": 64})),
    # Qwen3: q/k RMSNorm, head_dim decoupled from hidden / heads (24 * 4 != 64)
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", dict(head_dim=24)),
    # Mistral v0.1: sliding window, shorter than the test sequence so it matters
    "mistral": ("MistralConfig", "MistralForCausalLM", dict(sliding_window=7)),
}


def _hf_model(family: str, tie: bool, folder):
    import transformers

    config_class, model_class, extra = FAMILIES[family]
    torch.manual_seed(0)
    config = getattr(transformers, config_class)(**COMMON, tie_word_embeddings=tie, **extra)
    model = getattr(transformers, model_class)(config).eval()
    with torch.no_grad():  # biases and norms start at 0 and 1: make them count
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.3)
    model.save_pretrained(folder)
    return model


def _logits(model, tokens):
    with torch.no_grad():
        out = model(tokens)
    return out.logits if hasattr(out, "logits") else out


@pytest.mark.parametrize("tie", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_import_export_round_trip_bit_identical(family, tie, tmp_path):
    from transformers import AutoModelForCausalLM

    hf = _hf_model(family, tie, tmp_path / "hf")
    tokens = torch.randint(0, 211, (2, 40), generator=torch.Generator().manual_seed(1))
    reference = _logits(hf, tokens)

    ours = load_hf_model(tmp_path / "hf").eval()
    imported = (_logits(ours, tokens) - reference).abs().max().item()
    save_hf_model(ours, tmp_path / "out")
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["architectures"] == [FAMILIES[family][1]] and config["tie_word_embeddings"] is tie
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "out", dtype=torch.float32).eval()
    exported_diff = (_logits(exported, tokens) - reference).abs().max().item()
    round_trip = (_logits(load_hf_model(tmp_path / "out").eval(), tokens) - reference).abs().max().item()
    print(f"{family} tie={tie}: max|diff| import {imported} export {exported_diff} round trip {round_trip}")
    assert (imported, exported_diff, round_trip) == (0.0, 0.0, 0.0)
    assert reference.abs().max() > 1.0  # non-trivial logits
