"""Tokenizers in tiktoken's format: BPE trained on the data, tiktoken's named encodings, or a
transformers folder's byte-level BPE — each a kind in llmexp/tokenizers/kinds.py."""
from __future__ import annotations

from typing import Callable, Iterable

from llmexp.config.schema import TokenizerConfig
from llmexp.tokenizers import hf as _hf_kind  # noqa: F401  (registers kind=hf)
from llmexp.tokenizers.kinds import KINDS
from llmexp.tokenizers.tokenizer import Tokenizer


def load_tokenizer(cfg: TokenizerConfig, data_fingerprint: str, training_texts: Callable[[], Iterable[str]]) -> Tokenizer:
    """The tokenizer `cfg` names, loaded by its kind's loader."""
    return KINDS[cfg.kind](cfg, data_fingerprint, training_texts)


__all__ = ["Tokenizer", "load_tokenizer"]
