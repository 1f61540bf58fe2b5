"""Tiny models and a small trained BPE, shared by the eval and interop tests."""
from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tokenizer():
    """A 512-token byte-level BPE trained on Python's own docs (cached per test session)."""
    import pydoc_data.topics

    from llmexp.config.schema import TokenizerConfig
    from llmexp.tokenizers import load_tokenizer

    texts = list(pydoc_data.topics.topics.values())[:150]
    return load_tokenizer(TokenizerConfig(vocab_size=512), "tests-eval", lambda: iter(texts))


def tiny_model(vocab: int, tie: bool = False, seed: int = 0, max_seq_len: int = 96):
    from llmexp.models import Llama, LlamaShape

    torch.manual_seed(seed)
    shape = LlamaShape(vocab_size=vocab, n_layers=2, d_model=48, n_heads=4, n_kv_heads=2, ffn_dim=96,
                       max_seq_len=max_seq_len, rope_theta=10000.0, norm_eps=1e-5, tie_embeddings=tie)
    model = Llama(shape).eval()
    # Larger-than-init weights: a random model at init_std 0.02 is almost uniform, which would
    # make parity checks on argmax-based metrics meaningless.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(10.0)
    return model


@pytest.fixture(scope="session")
def exported(tokenizer, tmp_path_factory):
    """(llmexp model, tokenizer, transformers folder written by the exporter)."""
    from llmexp.interop.hf import save_hf_model

    model = tiny_model(tokenizer.n_vocab)
    folder = tmp_path_factory.mktemp("export") / "hf"
    save_hf_model(model, folder, tokenizer)
    return model, tokenizer, folder


@pytest.fixture(scope="session")
def make_model():
    """`make_model(vocab, tie=False, seed=0, max_seq_len=96)`: a tiny random llmexp Llama."""
    return tiny_model


@pytest.fixture
def checkpoint_run(exported, tmp_path):
    """An llmexp run folder (tokenizer/ + checkpoints/last.ckpt in Lightning's layout) holding
    the exported tiny model, as `llmexp export` and the adapter read it."""
    from dataclasses import asdict

    from llmexp.config.schema import ModelConfig

    model, tokenizer, _ = exported
    s = model.shape
    run = tmp_path / "run"
    tokenizer.save(run / "tokenizer")
    (run / "checkpoints").mkdir(parents=True)
    m = ModelConfig(name="t", n_layers=s.n_layers, d_model=s.d_model, n_heads=s.n_heads, n_kv_heads=s.n_kv_heads,
                    ffn_dim=s.ffn_dim, max_seq_len=s.max_seq_len)
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "llmexp": {"config": {"model": asdict(m)}}}, run / "checkpoints" / "last.ckpt")
    return run

