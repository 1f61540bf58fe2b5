"""Hugging Face interchange: export -> transformers and transformers -> llmexp, logits equal
in float32 (per family: test_families.py), tokenizers with identical ids, and no unpickling of untrusted files."""
from __future__ import annotations

import json

import pytest
import torch

from llmexp.hf_config import hf_model_fields, is_hf_folder
from llmexp.interop.hf import save_hf_model
from llmexp.models.hf import load_hf_model, shape_from_hf_config
from llmexp.models import Llama

TEXT = "Hello, world! The quick brown fox <|endoftext|> jumps over 1234 lazy dogs.\n\n  def f(x): return x"


@pytest.mark.parametrize("tie", [False, True])
def test_export_loads_in_transformers_with_matching_logits(tokenizer, make_model, tmp_path, tie):
    from transformers import AutoModelForCausalLM

    model = make_model(tokenizer.n_vocab, tie=tie)
    save_hf_model(model, tmp_path, tokenizer)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["tie_word_embeddings"] is tie
    assert config["num_key_value_heads"] == 2 and config["max_position_embeddings"] == 96
    hf = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    tokens = torch.randint(0, tokenizer.n_vocab, (3, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diff = (hf(tokens).logits - model(tokens)).abs().max().item()
    assert diff == 0.0
    assert model(tokens).abs().max() > 1.0  # the comparison is on non-trivial logits


def test_exported_tokenizer_gives_tiktoken_ids_offline(exported):
    from transformers import AutoTokenizer

    _, tokenizer, folder = exported
    hf = AutoTokenizer.from_pretrained(folder)
    ids = tokenizer.encoding.encode(TEXT, allowed_special="all")
    assert hf(TEXT, add_special_tokens=False)["input_ids"] == ids
    assert tokenizer.eot_id in ids  # the special token survived as one id
    assert hf.eos_token == "<|endoftext|>" and hf.eos_token_id == tokenizer.eot_id
    assert hf.decode(ids) == TEXT


def _random_transformers_llama(folder, tie: bool, vocab: int = 300):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=112, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         rope_parameters={"rope_type": "default", "rope_theta": 500000.0}, rms_norm_eps=1e-6,
                         tie_word_embeddings=tie, initializer_range=0.2)
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(folder)  # safetensors
    return model


@pytest.mark.parametrize("tie", [False, True])
def test_import_random_transformers_llama_matches_its_logits(tmp_path, tie):
    hf = _random_transformers_llama(tmp_path, tie)
    assert is_hf_folder(tmp_path)
    ours = load_hf_model(tmp_path).eval()
    assert ours.shape.rope_theta == 500000.0 and ours.shape.norm_eps == 1e-6 and ours.shape.tie_embeddings is tie
    tokens = torch.randint(0, 300, (2, 50), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        diff = (hf(tokens).logits - ours(tokens)).abs().max().item()
    assert diff == 0.0


def test_init_from_path_loads_hf_weights_into_a_model_of_the_config_shape(tmp_path):
    from llmexp.checkpoints import load_model_weights

    hf = _random_transformers_llama(tmp_path, tie=False)
    model = Llama(shape_from_hf_config(json.loads((tmp_path / "config.json").read_text())))
    load_model_weights(model, tmp_path)  # what init_from=<folder> does in StageModule
    tokens = torch.randint(0, 300, (1, 20))
    with torch.no_grad():
        assert (hf(tokens).logits - model.eval()(tokens)).abs().max() == 0.0


def test_unsupported_configs_are_rejected_with_reasons():
    base = {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_attention_heads": 4,
            "num_hidden_layers": 2, "intermediate_size": 128, "max_position_embeddings": 64, "vocab_size": 300}
    assert hf_model_fields(base)["n_kv_heads"] == 4
    with pytest.raises(ValueError, match="architecture GemmaForCausalLM is not supported"):
        hf_model_fields({**base, "architectures": ["GemmaForCausalLM"]})
    with pytest.raises(ValueError, match="rope scaling dynamic"):
        hf_model_fields({**base, "rope_scaling": {"rope_type": "dynamic", "factor": 8.0}})
    with pytest.raises(ValueError, match="mlp_bias"):
        hf_model_fields({**base, "mlp_bias": True})
    with pytest.raises(ValueError, match="mix sliding and full attention"):
        hf_model_fields({**base, "architectures": ["Qwen2ForCausalLM"], "use_sliding_window": True,
                         "sliding_window": 16, "layer_types": ["full_attention", "sliding_attention"]})
    # what llmexp represents: Mistral's window, Llama-3.1's rope scaling, Qwen2's biases
    assert hf_model_fields({**base, "architectures": ["MistralForCausalLM"], "sliding_window": 16})["sliding_window"] == 16
    llama3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
              "original_max_position_embeddings": 32}
    assert hf_model_fields({**base, "rope_scaling": llama3})["rope_scaling"] == "llama3"
    assert hf_model_fields({**base, "architectures": ["Qwen2ForCausalLM"]})["attention_bias"] == "qkv"


def test_pickled_weights_are_never_loaded(tmp_path):
    from llmexp.models.hf import load_hf_state_dict

    (tmp_path / "config.json").write_text("{}")
    torch.save({"x": torch.zeros(1)}, tmp_path / "pytorch_model.bin")
    assert not is_hf_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match="safetensors"):
        load_hf_state_dict(tmp_path)


def test_hf_tokenizer_converts_back_to_the_same_tiktoken_ranks(exported):
    from llmexp.tokenizers.hf import tokenizer_from_hf

    _, tokenizer, folder = exported
    back = tokenizer_from_hf(folder)
    assert back.encoding._mergeable_ranks == tokenizer.encoding._mergeable_ranks
    assert back.encode(TEXT) == tokenizer.encode(TEXT) and back.eot_id == tokenizer.eot_id


def test_export_cli_writes_a_folder_from_a_checkpoint(exported, checkpoint_run, tmp_path):
    """`llmexp export <.ckpt> <out>` on a Lightning-style llmexp checkpoint."""
    from llmexp.interop.cli import main

    model, tokenizer, _ = exported
    run = checkpoint_run
    main([str(run), str(tmp_path / "out")])
    reloaded = load_hf_model(tmp_path / "out")
    tokens = torch.randint(0, model.shape.vocab_size, (1, 30))
    with torch.no_grad():
        assert torch.equal(reloaded(tokens), model(tokens))


def test_hf_pre_tokenizer_splits_text_like_tiktoken(tokenizer):
    """Oniguruma reads tiktoken's possessive `\\p{N}{1,3}+` as "one or more runs of 1-3": the
    exported regex must still cut 2024 into 202|4 as tiktoken does."""
    import regex

    from llmexp.interop.tokenizer import hf_tokenizer
    from llmexp.tokenizers.bpe import _unicode_to_byte

    text = "In 2024, 1234567 items cost $99.95 -- 'tis   true\n\n x  \n\tÜber 中文"
    to_byte = _unicode_to_byte()
    pieces = [bytes(to_byte[c] for c in p) for p, _ in hf_tokenizer(tokenizer).pre_tokenizer.pre_tokenize_str(text)]
    assert pieces == [p.encode() for p in regex.findall(tokenizer.encoding._pat_str, text)]
