"""A deterministic, resumable order over training windows.

Sample k of the stream is a pure function of (seed, k): epoch e = k // W is a fresh
permutation of the W windows drawn from (seed, e). A run that resumes after consuming k
samples starts the stream at k: nothing is repeated or skipped across a restart. Each rank
of a data-parallel run takes every world_size-th sample of the same stream.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
from torch.utils.data import Sampler


class ResumableSampler(Sampler[int]):
    def __init__(self, n_windows: int, seed: int, start: int, length: int, rank: int = 0, world_size: int = 1):
        if n_windows <= 0:
            raise ValueError("no training windows: the training data is shorter than one sequence")
        self.n_windows, self.seed = n_windows, seed
        self.start, self.length = start, length  # in samples of this rank
        self.rank, self.world_size = rank, world_size

    def _epoch_order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.n_windows)

    def __iter__(self) -> Iterator[int]:
        epoch, order = -1, None
        for local in range(self.start, self.start + self.length):
            k = local * self.world_size + self.rank  # position in the global stream
            if k // self.n_windows != epoch:
                epoch = k // self.n_windows
                order = self._epoch_order(epoch)
            yield int(order[k % self.n_windows])

    def __len__(self) -> int:
        return self.length
