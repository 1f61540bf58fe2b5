"""Documents -> one flat token array per split, end-of-text between documents, cached on disk."""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import List

import numpy as np

from llmexp.io import atomic_write_bytes
from llmexp.tokenizers import Tokenizer


def token_dtype(n_vocab: int) -> np.dtype:
    return np.dtype(np.uint16) if n_vocab <= 2**16 else np.dtype(np.uint32)


def tokenize_documents(docs: List[str], tokenizer: Tokenizer) -> np.ndarray:
    ids: List[int] = []
    for doc_ids in tokenizer.encode_batch(docs):
        ids.extend(doc_ids)
        ids.append(tokenizer.eot_id)
    return np.asarray(ids, dtype=token_dtype(tokenizer.n_vocab))


def cached_tokens(path: Path, docs: List[str], tokenizer: Tokenizer) -> np.ndarray:
    """Tokens of `docs`, from `path` when it exists (the caller puts the content hash in it)."""
    if path.is_file():
        return np.load(path, mmap_mode="r")
    tokens = tokenize_documents(docs, tokenizer)
    buffer = io.BytesIO()
    np.save(buffer, tokens)
    atomic_write_bytes(path, buffer.getvalue())
    return tokens


def unigram_entropy(tokens: np.ndarray) -> float:
    """Entropy (nats/token) of the text's own unigram distribution: the loss of the best
    model that ignores context, measured on this same text."""
    counts = np.bincount(np.asarray(tokens, dtype=np.int64))
    p = counts[counts > 0] / len(tokens)
    return float(-(p * np.log(p)).sum())


def windows(n_tokens: int, seq_len: int) -> int:
    """Non-overlapping training windows of seq_len inputs (+1 shifted target) in n_tokens."""
    return max(0, math.floor((n_tokens - 1) / seq_len))
