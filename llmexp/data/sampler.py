"""A deterministic, resumable order over training windows of a weighted mix of sources.

Sample k of the global stream is a pure function of (seed, k), so a run that resumes after
consuming k samples starts the stream at k: nothing is repeated or skipped across a restart,
and each rank of a data-parallel run takes every world_size-th sample of the same stream.

Mixture semantics. Weights are normalised to probabilities p_s over *training tokens*; every
sample is one window of seq_len tokens, so they are also probabilities over samples. The
stream is cut into blocks of B samples; in each block source s gets exactly q_s = round(B p_s)
samples (largest remainder, at least 1), in an order shuffled by (seed, block). Realized
proportions therefore equal q_s/B (|q_s/B - p_s| <= 1/B, B >= 100/min p_s) over whole blocks
and stay within a block of that inside one. The j-th sample drawn from source s is window
perm_{s,e}(j mod W_s) of its W_s windows, e = j div W_s its epoch: each epoch visits every
window once in a fresh order (a keyed Feistel permutation: O(1) memory however many windows),
and a source with e >= 1 is being repeated.
"""
from __future__ import annotations

import hashlib
import math
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
from torch.utils.data import Sampler

_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: a well-mixed 64-bit hash of each element."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def _key(*parts: int) -> List[int]:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=32).digest()
    return [int.from_bytes(digest[i:i + 8], "little") for i in range(0, 32, 8)]  # 4 round keys


def permute(index: np.ndarray, n: int, key: Sequence[int]) -> np.ndarray:
    """A bijection of [0, n) chosen by `key`, applied to `index`: a 4-round Feistel network on
    the smallest even-bit domain >= n, cycle-walking values that land outside [0, n)."""
    half = max(1, ((n - 1).bit_length() + 1) // 2)
    mask, shift = np.uint64((1 << half) - 1), np.uint64(half)
    x = np.asarray(index, dtype=np.uint64).copy()
    pending = np.ones(x.shape, dtype=bool)
    while pending.any():
        y = x[pending]
        for k in key:
            left, right = y >> shift, y & mask
            y = (right << shift) | (left ^ (_mix(right ^ np.uint64(k)) & mask))
        x[pending] = y
        pending = x >= np.uint64(n)
    return x.astype(np.int64)


def apportion(total: int, p: np.ndarray) -> np.ndarray:
    """Largest-remainder integer shares of `total` for probabilities p, each at least 1."""
    exact = p * total
    q = np.maximum(1, np.floor(exact).astype(np.int64))
    while q.sum() < total:
        q[np.argmax(exact - q)] += 1
    while q.sum() > total:
        q[np.argmax(np.where(q > 1, q - exact, -np.inf))] -= 1
    return q


class Mixture:
    """The global stream: sample k -> (source, window), a pure function of (seed, k)."""

    def __init__(self, n_windows: Sequence[int], weights: Sequence[float], seed: int):
        if any(w <= 0 for w in n_windows):
            raise ValueError("no training windows: a source's training data is shorter than one sequence")
        self.n_windows = np.asarray(n_windows, dtype=np.int64)
        p = np.asarray(weights, dtype=np.float64)
        self.p = p / p.sum()
        self.seed, self.S = seed, len(self.p)
        self.B = int(min(1 << 22, max(1024, math.ceil(100 / self.p.min()))))
        self.q = apportion(self.B, self.p)
        self._block: Optional[Tuple[int, np.ndarray, np.ndarray]] = None

    def block(self, b: int) -> Tuple[np.ndarray, np.ndarray]:
        """(source of each position in block b, how many earlier positions of b share it)."""
        if self._block is not None and self._block[0] == b:
            return self._block[1], self._block[2]
        if self.S == 1:
            src, rank = np.zeros(self.B, dtype=np.int64), np.arange(self.B, dtype=np.int64)
        else:
            src = np.random.default_rng([self.seed, b]).permutation(np.repeat(np.arange(self.S), self.q))
            rank = np.empty(self.B, dtype=np.int64)
            for s in range(self.S):
                where = np.flatnonzero(src == s)
                rank[where] = np.arange(len(where))
        self._block = (b, src, rank)
        return src, rank

    def draws(self, ks: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For global sample indices ks: (source, index j of the draw within the source, window)."""
        ks = np.asarray(ks, dtype=np.int64)
        src, j = np.empty_like(ks), np.empty_like(ks)
        blocks = ks // self.B
        for b in np.unique(blocks):
            sel = blocks == b
            bsrc, brank = self.block(int(b))
            pos = ks[sel] % self.B
            src[sel] = bsrc[pos]
            j[sel] = b * self.q[bsrc[pos]] + brank[pos]
        window = np.empty_like(ks)
        for s in np.unique(src):
            sel = src == s
            W = int(self.n_windows[s])
            js = j[sel]
            out = np.empty_like(js)
            epochs = js // W
            for e in np.unique(epochs):
                at = epochs == e
                out[at] = permute(js[at] % W, W, _key(self.seed, int(s), int(e)))
            window[sel] = out
        return src, j, window

    def counts(self, n_samples: int) -> np.ndarray:
        """Samples of each source among the first n_samples of the stream."""
        full, part = divmod(int(n_samples), self.B)
        counts = full * self.q
        if part:
            counts = counts + np.bincount(self.block(full)[0][:part], minlength=self.S)
        return counts

    def first_repeat(self) -> Tuple[int, int]:
        """(k, source): the first global sample that re-uses a window (a source's epoch 1)."""
        best = (np.iinfo(np.int64).max, -1)
        for s in range(self.S):
            b, r = divmod(int(self.n_windows[s]), int(self.q[s]))
            pos = int(np.flatnonzero(self.block(b)[0] == s)[r])
            best = min(best, (b * self.B + pos, s))
        return best


class MixtureSampler(Sampler):
    """This rank's share of the global stream from local sample `start`: (source, window) pairs.

    Its length is the whole run's share, `start + length`, while iteration begins at `start`:
    Lightning restores how many batches of the (single, run-long) epoch were done from the
    checkpoint and ends the epoch when that count reaches len(dataloader). A length of only
    what is left would end the epoch early after a resume, and the next epoch would replay the
    stream from `start` (llmexp issue 12)."""

    CHUNK = 4096

    def __init__(self, mixture: Mixture, start: int, length: int, rank: int = 0, world_size: int = 1):
        self.mixture, self.start, self.length = mixture, start, length  # in samples of this rank
        self.rank, self.world_size = rank, world_size

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        end = self.start + self.length
        for lo in range(self.start, end, self.CHUNK):
            local = np.arange(lo, min(end, lo + self.CHUNK), dtype=np.int64)
            src, _, window = self.mixture.draws(local * self.world_size + self.rank)
            yield from zip(src.tolist(), window.tolist())

    def __len__(self) -> int:
        return self.start + self.length


class ResumableSampler(MixtureSampler):
    """The one-source case: indices into n_windows items (windows, or post-training examples),
    a fresh permutation each pass over them."""

    def __init__(self, n_windows: int, seed: int, start: int, length: int, rank: int = 0, world_size: int = 1):
        super().__init__(Mixture([n_windows], [1.0], seed), start, length, rank, world_size)

    def __iter__(self) -> Iterator[int]:
        return (window for _, window in super().__iter__())
