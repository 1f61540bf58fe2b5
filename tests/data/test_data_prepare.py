"""Tokenize to shards: content-addressed cache, index and checksums, EOT between documents,
document-level validation split, resumable, corrupt shards detected and rebuilt."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from llmexp.data import prepare as prepare_mod
from llmexp.data.prepare import prepare_data
from llmexp.data.shards import iter_part_texts, open_shard, sha256_file
from llmexp.data.sources import DataError
from tests.data.conftest import config, corpus, jsonl_source, write_jsonl


@pytest.fixture
def two_sources(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", corpus(1, 120))
    b = write_jsonl(tmp_path / "b.jsonl", corpus(2, 80))
    return [jsonl_source(a, "a", 3.0), jsonl_source(b, "b", 1.0)]


def test_shards_index_and_documents_round_trip(tmp_path, two_sources, quiet):
    cfg = config(tmp_path, two_sources, val_fraction=0.1, shard_bytes=8_000)
    data = prepare_data(cfg, log=quiet)
    tok = data.tokenizer
    assert data.dtype == np.uint16 and [s.weight for s in data.sources] == [0.75, 0.25]
    src = data.sources[0]
    index = json.loads((src.token_dir / "index.json").read_text())
    assert len(index["splits"]["train"]) > 1  # several shards: ~8 kB of text each
    docs = []
    for meta in index["splits"]["train"] + index["splits"]["val"]:
        path = src.token_dir / meta["file"]
        assert sha256_file(path) == meta["sha256"] and path.stat().st_size == 2 * meta["tokens"]
        ids = np.asarray(open_shard(path, data.dtype, meta["tokens"]))
        assert ids[-1] == tok.eot_id and (ids == tok.eot_id).sum() == meta["docs"]
        docs += [tok.decode(chunk[:-1]) for chunk in np.split(ids, np.flatnonzero(ids == tok.eot_id) + 1)[:-1]]
    originals = corpus(1, 120)
    assert sorted(docs) == sorted(originals)  # every document exactly once
    train_docs = src.clean["train"]["docs"]
    assert 0 < src.clean["val"]["docs"] < train_docs and train_docs + src.clean["val"]["docs"] == 120
    assert 1.2 < src.bytes_per_token < 3.0  # a 300-token BPE merges little
    assert "bytes/token" in data.describe() and data.val_unigram_entropy > 0


def test_second_prepare_reads_nothing_and_uint32_for_large_vocabularies(tmp_path, two_sources, quiet, monkeypatch):
    cfg = config(tmp_path, two_sources, tokenizer=["tokenizer=cl100k_base"])
    first = prepare_data(cfg, log=quiet)
    assert first.dtype == np.uint32
    monkeypatch.setattr(prepare_mod, "MixCleaning", lambda *a: pytest.fail("read the data again"))
    monkeypatch.setattr(prepare_mod, "MixTokenization", lambda *a: pytest.fail("tokenized again"))
    again = prepare_data(cfg, log=quiet)
    assert again.fingerprint == first.fingerprint
    cfg.data.sources[1].clean.exact_dedup = True  # another cleaning config: another cache entry
    with pytest.raises(pytest.fail.Exception, match="read the data again"):
        prepare_data(cfg, log=quiet)


def test_truncated_shard_is_detected_and_rebuilt(tmp_path, two_sources, quiet):
    cfg = config(tmp_path, two_sources, shard_bytes=8_000)
    data = prepare_data(cfg, log=quiet)
    meta = data.sources[0].index["splits"]["train"][1]
    path = data.sources[0].token_dir / meta["file"]
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(DataError, match="truncated or corrupt"):
        open_shard(path, data.dtype, meta["tokens"])
    messages = []
    prepare_data(cfg, log=messages.append)
    assert path.read_bytes() == good and any("rebuilding" in m for m in messages)
    # Same size, flipped bytes: only the full checksum sees it (`llmexp prepare --verify`).
    path.write_bytes(good[:10] + bytes([good[10] ^ 0xFF]) + good[11:])
    prepare_data(cfg, log=quiet)
    assert path.read_bytes() != good
    prepare_data(cfg, verify=True, log=quiet)
    assert path.read_bytes() == good


def test_interrupted_tokenization_keeps_finished_shards(tmp_path, two_sources, quiet):
    cfg = config(tmp_path, two_sources, shard_bytes=8_000)
    data = prepare_data(cfg, log=quiet)
    src = data.sources[0]
    stamps = {m["file"]: (src.token_dir / m["file"]).stat().st_mtime_ns for m in src.index["splits"]["train"]}
    lost = src.index["splits"]["train"][0]["file"]
    (src.token_dir / "index.json").unlink()  # as if killed before the index was written...
    (src.token_dir / lost).unlink()  # ...and before this shard was renamed into place
    lines = []
    again = prepare_data(cfg, log=lines.append)
    assert any(f"tokenizing {len(stamps) + len(src.index['splits']['val'])} part(s) on datatrove" in x for x in lines)
    for name, stamp in stamps.items():  # the parts whose shards are whole are not read again
        assert (src.token_dir / name).stat().st_mtime_ns == stamp or name == lost
    assert (src.token_dir / lost).is_file() and again.sources[0].index == src.index


def test_a_source_emptied_by_cleaning_names_the_steps(tmp_path, quiet):
    a = write_jsonl(tmp_path / "a.jsonl", ["short", "tiny"])
    with pytest.raises(DataError, match=r"data source 'a': cleaning removed every one of 2 documents \(length 2->2, min_words 2->0\)"):
        prepare_data(config(tmp_path, [jsonl_source(a, "a", min_words=5)]), log=quiet)


def reference_shard(part, tok, dtype) -> np.ndarray:
    """The in-process tokenization the engine replaced: every document of the part, in order,
    encode_ordinary, then end-of-text."""
    ids = [i for texts in iter_part_texts(part) for t in texts for i in (*tok.encoding.encode_ordinary(t), tok.eot_id)]
    return np.asarray(ids, dtype=dtype)


def test_engine_shards_equal_in_process_tokenization_with_one_or_two_workers(tmp_path, quiet):
    a = write_jsonl(tmp_path / "a.jsonl", corpus(3, 300, words=400))
    runs = [prepare_data(config(tmp_path / f"w{w}", [jsonl_source(a, "a")], ["tokenizer=cl100k_base"], shard_bytes=100_000,
                                workers=w), log=quiet) for w in (2, 1)]
    two, one = (r.sources[0] for r in runs)
    assert len(two.index["splits"]["train"]) > 2 and two.index == one.index  # same shards, sizes, checksums
    for split in ("train", "val"):
        for part, meta in zip(two.clean[split]["parts"], two.index["splits"][split]):
            expected = reference_shard(two.folder / "clean" / part, runs[0].tokenizer, runs[0].dtype)
            assert meta["tokens"] == len(expected) and meta["sha256"] == hashlib.sha256(expected.tobytes()).hexdigest()
            assert sha256_file(two.token_dir / meta["file"]) == meta["sha256"]


def _indexes_prepared_here(cfg) -> list[dict]:
    return [s.index for s in prepare_data(cfg, log=lambda line: None).sources]


def test_two_processes_preparing_the_same_data_at_once_both_finish(tmp_path, two_sources):
    """A study's parallel runs or sweep agents share the data cache: they take turns at cleaning
    and tokenizing, and the later one finds the shards made (it once found the other's datatrove
    work folder removed under it: "tokenization left unfinished tasks")."""
    import multiprocessing

    cfg = config(tmp_path, two_sources, shard_bytes=8_000)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        first, second = pool.map(_indexes_prepared_here, [cfg, cfg])
    assert first == second and all(index["splits"]["train"] for index in first)
