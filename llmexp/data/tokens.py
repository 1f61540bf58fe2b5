"""Small facts about token arrays: their dtype, windows, and the unigram baseline."""
from __future__ import annotations

import math

import numpy as np


def token_dtype(n_vocab: int) -> np.dtype:
    """uint16 when every id fits (vocabularies up to 65,536), uint32 otherwise."""
    return np.dtype(np.uint16) if n_vocab <= 2**16 else np.dtype(np.uint32)


def entropy_of_counts(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def unigram_entropy(tokens: np.ndarray) -> float:
    """Entropy (nats/token) of the text's own unigram distribution: the loss of the best
    model that ignores context, measured on this same text."""
    return entropy_of_counts(np.bincount(np.asarray(tokens, dtype=np.int64)))


def windows(n_tokens: int, seq_len: int) -> int:
    """Non-overlapping training windows of seq_len inputs (+1 shifted target) in n_tokens."""
    return max(0, math.floor((n_tokens - 1) / seq_len))
