"""Document-level train/validation split: no document is in both."""
from __future__ import annotations

import hashlib
from typing import List, Tuple


def _unit_hash(seed: int, text: str) -> float:
    digest = hashlib.blake2b(f"{seed}:".encode() + text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


def split_documents(docs: List[str], val_fraction: float, seed: int) -> Tuple[List[str], List[str]]:
    """Each document goes to validation with probability `val_fraction`, decided by a hash of
    its content: stable when documents are added or reordered. At least one document lands
    on each side when there are two or more."""
    scores = [_unit_hash(seed, d) for d in docs]
    val_idx = {i for i, s in enumerate(scores) if s < val_fraction}
    if not val_idx and len(docs) > 1:
        val_idx = {min(range(len(docs)), key=scores.__getitem__)}
    if len(val_idx) == len(docs) and len(docs) > 1:
        val_idx.discard(max(range(len(docs)), key=scores.__getitem__))
    train = [d for i, d in enumerate(docs) if i not in val_idx]
    val = [d for i, d in enumerate(docs) if i in val_idx]
    return train, val
