"""Helpers for the data tests: small corpora on disk and configs for them."""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import llmexp  # noqa: E402
from llmexp.config.schema import CleanConfig, SourceConfig  # noqa: E402

WORDS = ("the of and to in is that for it as with was on be by this are from or an at which have not but "
         "data model token shard source weight mixture sample window epoch cache index clean text").split()


def sentence(rng: random.Random, n: int = 40) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)) + "."


def write_jsonl(path: Path, docs, field: str = "text") -> Path:
    path.write_text("".join(json.dumps({field: d}) + "\n" for d in docs))
    return path


def corpus(seed: int, n_docs: int, words: int = 60) -> list[str]:
    rng = random.Random(seed)
    return [f"doc {seed}-{i}: " + " ".join(sentence(rng, words // 4) for _ in range(4)) for i in range(n_docs)]


def config(tmp_path: Path, sources: list[SourceConfig], tokenizer: list[str] = ("tokenizer.vocab_size=300",), **data):
    """A validated config whose data section is `sources` (cache under tmp_path)."""
    cfg = llmexp.compose(list(tokenizer))
    cfg.data.sources = sources
    cfg.data.cache_dir = str(tmp_path / "cache")
    cfg.tokenizer.cache_dir = str(tmp_path / "cache")
    for key, value in data.items():
        setattr(cfg.data, key, value)
    return cfg


def jsonl_source(path: Path, name: str, weight: float = 1.0, **clean) -> SourceConfig:
    return SourceConfig(kind="jsonl", name=name, path=str(path), weight=weight, clean=CleanConfig(**clean))


@pytest.fixture
def quiet():
    return lambda message: None
