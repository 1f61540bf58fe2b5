"""Data preparation for a run: documents -> split -> tokenizer -> cached token arrays."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import List

import numpy as np

from llmexp.config.schema import Config
from llmexp.data.sources import fingerprint, source_documents
from llmexp.data.split import split_documents
from llmexp.data.tokens import cached_tokens, unigram_entropy
from llmexp.io import cache_root
from llmexp.tokenizers import Tokenizer, load_tokenizer


@dataclass
class PreparedData:
    tokenizer: Tokenizer
    train: np.ndarray
    val: np.ndarray
    fingerprint: str  # of all documents, in order
    n_train_docs: int
    n_val_docs: int

    @property
    def val_unigram_entropy(self) -> float:
        return unigram_entropy(self.val)

    def describe(self) -> str:
        return (
            f"data: {self.n_train_docs} train / {self.n_val_docs} validation documents, "
            f"{len(self.train):,} / {len(self.val):,} tokens (fingerprint {self.fingerprint}); "
            f"unigram entropy of the validation text: {self.val_unigram_entropy:.3f} nats/token"
        )


def prepare_data(cfg: Config) -> PreparedData:
    docs: List[str] = [doc for source in cfg.data.sources for doc in source_documents(source)]
    data_fp = fingerprint(docs)
    train_docs, val_docs = split_documents(docs, cfg.data.val_fraction, cfg.data.split_seed)
    # The tokenizer learns from training documents only, so validation stays held out.
    tokenizer = load_tokenizer(cfg.tokenizer, fingerprint(train_docs), lambda: iter(train_docs))
    key = hashlib.sha256(
        json.dumps([data_fp, tokenizer.name, cfg.data.val_fraction, cfg.data.split_seed]).encode()
    ).hexdigest()[:16]
    folder = cache_root(cfg.data.cache_dir) / "tokens" / key
    return PreparedData(
        tokenizer=tokenizer,
        train=cached_tokens(folder / "train.npy", train_docs, tokenizer),
        val=cached_tokens(folder / "val.npy", val_docs, tokenizer),
        fingerprint=data_fp,
        n_train_docs=len(train_docs),
        n_val_docs=len(val_docs),
    )
