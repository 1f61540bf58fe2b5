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


class StreamSplit:
    """`split_documents` for a stream too large to hold: each document goes to `train(doc)` or
    `val(doc)` as it arrives. To keep the guarantee of one document on each side (when there
    are two or more) without a second pass, the train document with the lowest score and the
    validation document with the highest are held back until `finish()`, which moves one of
    them across when a side would otherwise be empty: the same result as the list version."""

    def __init__(self, val_fraction: float, seed: int, train, val):
        self.val_fraction, self.seed = val_fraction, seed
        self.emit = {False: train, True: val}
        self.held: dict[bool, tuple[float, str] | None] = {False: None, True: None}
        self.written = {False: 0, True: 0}

    def __call__(self, doc: str) -> None:
        score = _unit_hash(self.seed, doc)
        side = score < self.val_fraction
        held = self.held[side]
        # train keeps its lowest score held back, validation its highest
        if held is None or (score < held[0] if not side else score > held[0]):
            self.held[side] = (score, doc)
            doc = held[1] if held else None
        if doc is not None:
            self.emit[side](doc)
            self.written[side] += 1

    def finish(self) -> tuple[int, int]:
        """Flush the held documents; returns (train, validation) document counts."""
        t, v = self.held[False], self.held[True]
        if v is None and t is not None and self.written[False] > 0:
            self.held = {False: None, True: t}
        elif t is None and v is not None and self.written[True] > 0:
            self.held = {False: v, True: None}
        for side in (False, True):
            if self.held[side] is not None:
                self.emit[side](self.held[side][1])
                self.written[side] += 1
                self.held[side] = None
        return self.written[False], self.written[True]
