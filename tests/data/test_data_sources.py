"""Source kinds (text, JSONL, Parquet, Hugging Face datasets offline, templates) and bad input."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import llmexp
from llmexp.config.errors import ConfigError
from llmexp.config.schema import SourceConfig
from llmexp.data.sources import DataError, iter_documents, source_documents, source_fingerprint


def test_parquet_with_a_template_over_two_columns(tmp_path):
    pq.write_table(pa.table({"title": ["A", "B"], "body": ["first", "second"], "n": [1, 2]}), tmp_path / "p.parquet")
    src = SourceConfig(kind="parquet", path=str(tmp_path / "p.parquet"), template="{title}\n\n{body}")
    assert list(iter_documents(src)) == ["A\n\nfirst", "B\n\nsecond"]
    plain = SourceConfig(kind="parquet", path=str(tmp_path), text_field="body")
    assert list(iter_documents(plain)) == ["first", "second"]
    wrong = SourceConfig(kind="parquet", path=str(tmp_path), text_field="text")
    with pytest.raises(DataError, match=r"no column 'text' \(columns: title, body, n\)"):
        list(iter_documents(wrong))


def test_hf_dataset_from_save_to_disk_and_from_local_json(tmp_path):
    import datasets

    datasets.Dataset.from_dict({"text": ["one", "two", "three"], "meta": ["a", "b", "c"]}).save_to_disk(tmp_path / "ds")
    src = SourceConfig(kind="hf", path=str(tmp_path / "ds"))
    assert list(iter_documents(src)) == ["one", "two", "three"]
    (tmp_path / "raw.jsonl").write_text('{"q": "x", "a": "y"}\n{"q": "z", "a": "w"}\n')
    builder = SourceConfig(kind="hf", dataset="json", path=str(tmp_path / "raw.jsonl"), template="Q: {q} A: {a}")
    assert list(iter_documents(builder)) == ["Q: x A: y", "Q: z A: w"]
    wrong = SourceConfig(kind="hf", name="mine", path=str(tmp_path / "ds"), text_field="body")
    with pytest.raises(DataError, match="data source 'mine': no field 'body'"):
        list(iter_documents(wrong))


def test_jsonl_template_names_a_missing_field(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"title": "t", "text": "x"}\n')
    src = SourceConfig(kind="jsonl", path=str(tmp_path / "a.jsonl"), template="{title}: {body}")
    with pytest.raises(DataError, match=r"a.jsonl:1: no field 'body' for the template"):
        list(iter_documents(src))


def test_undecodable_jsonl_and_empty_sources_are_clear_errors(tmp_path):
    (tmp_path / "bad.jsonl").write_bytes(b'{"text": "ok"}\n{"text": "\xff\xfe"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: not UTF-8"):
        list(iter_documents(SourceConfig(kind="jsonl", path=str(tmp_path / "bad.jsonl"))))
    (tmp_path / "empty.jsonl").write_text('{"text": "  "}\n')
    with pytest.raises(DataError, match="every document is empty"):
        source_documents(SourceConfig(kind="jsonl", path=str(tmp_path / "empty.jsonl")))
    with pytest.raises(DataError, match="no files match"):
        list(iter_documents(SourceConfig(kind="text", path=str(tmp_path / "none" / "*.md"))))


def test_fingerprint_follows_the_files(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("hello")
    src = SourceConfig(kind="text", path=str(tmp_path))
    before = source_fingerprint(src)
    assert source_fingerprint(src) == before
    f.write_text("hello, changed")
    assert source_fingerprint(src) != before


@pytest.mark.parametrize("override,message", [
    ("data.sources.0.weight=0", "data.sources.0.weight=0"),
    ("data.sources.0.weight=-1", "must be > 0"),
    ("data.sources.0.kind=csv", "allowed: embedded, text, jsonl, parquet, hf"),
    ("data.on_exhausted=loop", "allowed: repeat, stop"),
    ("data.sources.0.clean.unicode_normalize=NFX", "NFC"),
    ("data.sources.0.clean.near_dedup_threshold=1.5", "(0, 1)"),
])
def test_bad_data_config_is_a_config_error(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        llmexp.compose([override])


def test_two_sources_need_distinct_names():
    with pytest.raises(ConfigError, match="unique name"):
        llmexp.compose(["data=mix", "data.sources.1.path=README.md", "data.sources.1.name=pydoc"])
