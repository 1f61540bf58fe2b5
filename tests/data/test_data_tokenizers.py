"""Tokenizers: BPE trained in tiktoken's format, cached by content; named encodings offline."""
from __future__ import annotations

import pytest

from llmexp.config.schema import TokenizerConfig
from llmexp.data.sources import embedded_documents, fingerprint
from llmexp.tokenizers import Tokenizer, load_tokenizer

DOCS = embedded_documents()


def _bpe(vocab: int, cache) -> Tokenizer:
    cfg = TokenizerConfig(kind="bpe", name="bpe", vocab_size=vocab, cache_dir=str(cache))
    return load_tokenizer(cfg, fingerprint(DOCS), lambda: iter(DOCS))


def test_bpe_has_the_configured_vocabulary_and_round_trips(tmp_path):
    tok = _bpe(2048, tmp_path)
    assert tok.n_vocab == 2048
    text = DOCS[3][:2000] + " naïve café 東京 🙂 \x00"
    assert tok.decode(tok.encode(text)) == text
    assert tok.encoding.encode("<|im_start|>", allowed_special="all") == [2048 - 2]
    assert tok.encode("<|endoftext|>") != [tok.eot_id]  # text never becomes a special token


def test_bpe_compresses_english(tmp_path):
    tok = _bpe(4096, tmp_path)
    text = "\n".join(DOCS[:20])
    assert len(text.encode()) / len(tok.encode(text)) > 3.0  # bytes per token


def test_bpe_is_trained_once_per_content_hash(tmp_path):
    first = _bpe(1024, tmp_path)
    stamp = first.ranks_path.stat().st_mtime_ns
    calls = []
    cfg = TokenizerConfig(kind="bpe", vocab_size=1024, cache_dir=str(tmp_path))
    again = load_tokenizer(cfg, fingerprint(DOCS), lambda: calls.append(1) or iter(DOCS))
    assert calls == [] and again.ranks_path.stat().st_mtime_ns == stamp
    other = load_tokenizer(cfg, fingerprint(DOCS[:10]), lambda: iter(DOCS[:10]))
    assert other.ranks_path != first.ranks_path  # other data, other tokenizer


def test_saved_tokenizer_reloads_identically(tmp_path):
    tok = _bpe(1024, tmp_path / "cache")
    tok.save(tmp_path / "run" / "tokenizer")
    again = Tokenizer.load(tmp_path / "run" / "tokenizer")
    assert again.encode(DOCS[0]) == tok.encode(DOCS[0]) and again.n_vocab == tok.n_vocab


def test_cl100k_base_works_offline():
    tok = load_tokenizer(TokenizerConfig(kind="tiktoken", name="cl100k_base", vocab_size=100277), "", lambda: iter(()))
    assert tok.n_vocab == 100277
    assert tok.encode("hello world") == [15339, 1917]  # cl100k_base's published ids


def test_named_encoding_vocab_mismatch_is_an_error():
    with pytest.raises(ValueError, match="100277"):
        load_tokenizer(TokenizerConfig(kind="tiktoken", name="cl100k_base", vocab_size=100000), "", lambda: iter(()))


def test_bpe_learns_from_the_mix_by_weight_and_reserves_chat_tokens(tmp_path):
    from llmexp.data.prepare import prepare_data, training_texts
    from tests.data.conftest import config, jsonl_source, write_jsonl

    a = write_jsonl(tmp_path / "a.jsonl", [f"alpha {i} " * 50 for i in range(200)])
    b = write_jsonl(tmp_path / "b.jsonl", [f"beta {i} " * 50 for i in range(200)])
    cfg = config(tmp_path, [jsonl_source(a, "a", 0.8), jsonl_source(b, "b", 0.2)], tokenizer=["tokenizer.vocab_size=400"])
    data = prepare_data(cfg, log=lambda m: None)
    texts = list(training_texts(data.sources, 20_000))
    from_a = sum(len(t) for t in texts if t.startswith("alpha"))
    from_b = sum(len(t) for t in texts if t.startswith("beta"))
    assert 3 < from_a / from_b < 5  # ~0.8 : 0.2 of the training bytes
    enc = data.tokenizer.encoding
    specials = ["<|endoftext|>", "<|pad|>", "<|im_start|>", "<|im_end|>"]
    assert [enc.encode(s, allowed_special="all")[0] for s in specials] == list(range(396, 400))


def test_continued_pretraining_on_other_data_keeps_the_runs_tokenizer(tmp_path):
    """init_from=<llmexp run> at stage=pretrain reads the new data with the run's own BPE: one
    trained anew on this data would give the loaded embeddings other ids."""
    import llmexp
    import yaml

    from llmexp.data.prepare import prepare_data
    from llmexp.rundir import config_dict
    from tests.data.conftest import jsonl_source, write_jsonl

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")  # never loaded here
    base = llmexp.compose(["tokenizer.vocab_size=300"])
    (run / "config.yaml").write_text(yaml.safe_dump(config_dict(base)))
    _bpe(300, tmp_path / "cache").save(run / "tokenizer")  # trained on the embedded documents
    other = write_jsonl(tmp_path / "other.jsonl", [f"gamma delta {i} " * 40 for i in range(200)])
    cfg = llmexp.compose([f"init_from={run}"])
    cfg.data.sources = [jsonl_source(other, "other")]
    cfg.data.cache_dir = cfg.tokenizer.cache_dir = str(tmp_path / "cache")
    data = prepare_data(cfg, log=lambda m: None)
    saved = Tokenizer.load(run / "tokenizer")
    assert data.tokenizer.name == saved.name and data.tokenizer.encode("gamma delta 7") == saved.encode("gamma delta 7")

