"""Data: document-level split, deterministic resumable order, baselines."""
from __future__ import annotations

import numpy as np
import pytest

from llmexp.config.schema import SourceConfig
from llmexp.data.sampler import ResumableSampler
from llmexp.data.sources import DataError, embedded_documents, source_documents
from llmexp.data.split import split_documents
from llmexp.data.tokens import unigram_entropy


def test_embedded_corpus_is_several_hundred_kb_of_english():
    docs = embedded_documents()
    size = sum(len(d.encode()) for d in docs)
    assert size > 300_000 and len(docs) > 50
    words = " ".join(docs).split()
    assert sum(w.lower() in {"the", "and", "of", "is"} for w in words) / len(words) > 0.05


def test_split_is_by_document_and_stable():
    docs = embedded_documents()
    train, val = split_documents(docs, 0.1, seed=7)
    assert not set(train) & set(val) and len(train) + len(val) == len(docs) and val
    train2, val2 = split_documents(list(reversed(docs)), 0.1, seed=7)
    assert set(val2) == set(val)  # decided by content, not position


def test_sampler_is_deterministic_and_resumes_exactly():
    full = list(ResumableSampler(37, seed=3, start=0, length=100))
    assert full == list(ResumableSampler(37, seed=3, start=0, length=100))
    assert full != list(ResumableSampler(37, seed=4, start=0, length=100))
    assert list(ResumableSampler(37, seed=3, start=55, length=45)) == full[55:]
    assert sorted(full[:37]) == list(range(37))  # one epoch visits every window once


def test_sampler_ranks_partition_the_stream():
    stream = list(ResumableSampler(50, seed=1, start=0, length=40))
    r0 = list(ResumableSampler(50, seed=1, start=0, length=20, rank=0, world_size=2))
    r1 = list(ResumableSampler(50, seed=1, start=0, length=20, rank=1, world_size=2))
    assert r0 == stream[0::2] and r1 == stream[1::2]


def test_unigram_entropy_of_uniform_tokens():
    tokens = np.arange(256).repeat(4)
    assert unigram_entropy(tokens) == pytest.approx(np.log(256))


def test_jsonl_source_reads_the_field_and_names_bad_lines(tmp_path):
    good = tmp_path / "a.jsonl"
    good.write_text('{"text": "one"}\n\n{"text": "two", "x": 1}\n')
    assert source_documents(SourceConfig(kind="jsonl", path=str(good))) == ["one", "two"]
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"body": "one"}\n')
    with pytest.raises(DataError, match="b.jsonl:1: no field 'text'"):
        source_documents(SourceConfig(kind="jsonl", path=str(bad)))


def test_text_source_rejects_undecodable_bytes(tmp_path):
    (tmp_path / "ok.txt").write_text("hello")
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataError, match="bad.txt: not UTF-8"):
        source_documents(SourceConfig(kind="text", path=str(tmp_path)))


@pytest.mark.parametrize("n", [1, 2, 3, 10, None])
def test_streaming_split_equals_the_list_split(n):
    from llmexp.data.split import StreamSplit

    docs = embedded_documents()[:n] if n else embedded_documents()
    for fraction in (0.01, 0.1, 0.45):
        train, val = [], []
        splitter = StreamSplit(fraction, 7, train.append, val.append)
        for d in docs:
            splitter(d)
        assert splitter.finish() == (len(train), len(val))
        expected_train, expected_val = split_documents(docs, fraction, seed=7)
        assert sorted(train) == sorted(expected_train) and sorted(val) == sorted(expected_val)
