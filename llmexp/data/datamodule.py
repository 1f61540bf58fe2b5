"""The LightningDataModule for token streams: a resumable weighted mixture of memory-mapped
shards for training, a fixed interleaved set of windows for validation."""
from __future__ import annotations

from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from llmexp.data.prepare import PreparedData
from llmexp.data.resume import ResumableDataModule
from llmexp.data.sampler import Mixture, MixtureSampler
from llmexp.data.shards import open_shard
from llmexp.data.sources import DataError
from llmexp.data.tokens import windows


class WindowDataset(Dataset):
    """Window i of one flat token array: tokens[i*T : i*T + T + 1], inputs and shifted targets."""

    def __init__(self, tokens: np.ndarray, seq_len: int):
        self.tokens, self.seq_len = tokens, seq_len
        self.n = windows(len(tokens), seq_len)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        start = i * self.seq_len
        return torch.from_numpy(np.asarray(self.tokens[start : start + self.seq_len + 1], dtype=np.int64))


class ShardWindows(Dataset):
    """Windows of every source's shards, addressed as (source, window). Windows never cross a
    shard boundary. Shards are memory-mapped lazily, once per process (DataLoader workers too),
    so memory stays bounded by the pages actually read, whatever the size of the data."""

    def __init__(self, shards: Sequence[Sequence[Tuple[Path, int]]], dtype: np.dtype, seq_len: int):
        self.shards, self.dtype, self.seq_len = [list(s) for s in shards], dtype, seq_len
        per_shard = [[windows(n, seq_len) for _, n in s] for s in self.shards]
        self.starts = [np.concatenate([[0], np.cumsum(w)]) for w in per_shard]  # first window of each shard
        self.n_windows = [int(s[-1]) for s in self.starts]
        self._open: dict = {}

    def _array(self, source: int, shard: int) -> np.ndarray:
        key = (source, shard)
        if key not in self._open:
            path, n = self.shards[source][shard]
            self._open[key] = open_shard(path, self.dtype, n)
        return self._open[key]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_open": {}}  # memmaps are reopened in the worker, not pickled

    def __getitem__(self, item: Tuple[int, int]) -> torch.Tensor:
        source, window = item
        shard = int(np.searchsorted(self.starts[source], window, side="right")) - 1
        start = (window - int(self.starts[source][shard])) * self.seq_len
        tokens = self._array(source, shard)[start : start + self.seq_len + 1]
        return torch.from_numpy(np.asarray(tokens, dtype=np.int64))

    def __len__(self) -> int:
        return sum(self.n_windows)

    def interleaved(self, limit: int) -> List[Tuple[int, int]]:
        """Up to `limit` windows taking one from each source in turn: validation sees every source."""
        out: List[Tuple[int, int]] = []
        for w in range(max(self.n_windows, default=0)):
            for s, n in enumerate(self.n_windows):
                if w < n:
                    out.append((s, w))
                    if len(out) == limit:
                        return out
        return out


class _Items(Dataset):
    def __init__(self, base: ShardWindows, items: List[Tuple[int, int]]):
        self.base, self.items = base, items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.base[self.items[i]]


class TokenDataModule(ResumableDataModule):
    def __init__(
        self, data: PreparedData, seq_len: int, micro_batch_size: int, total_micro_batches: int,
        val_batches: int, seed: int, num_workers: int = 0, on_exhausted: str = "repeat", global_batch_size: int = 0,
        val_batch_size: int = 0,
    ):
        super().__init__()
        self.data, self.seq_len, self.micro = data, seq_len, micro_batch_size
        self.val_micro = val_batch_size or micro_batch_size  # a pipeline's training batch is a whole step
        self.total_micro_batches = total_micro_batches  # per rank, for the whole run
        self.val_batches, self.seed, self.num_workers = val_batches, seed, num_workers
        self.on_exhausted, self.global_batch_size = on_exhausted, global_batch_size
        self.train_windows = ShardWindows(data.shards("train"), data.dtype, seq_len)
        names = [s.name for s in data.sources]
        short = [n for n, w in zip(names, self.train_windows.n_windows) if w == 0]
        if short:
            raise DataError(f"data source {short[0]!r}: its training text is shorter than one sequence of {seq_len} tokens")
        self.mixture = Mixture(self.train_windows.n_windows, [s.weight for s in data.sources], seed)
        self.names = names

    # ------------------------------------------------------------ mixture accounting

    def source_tokens(self, global_samples: int) -> dict[str, int]:
        """Training tokens drawn from each source in the first `global_samples` samples."""
        counts = self.mixture.counts(global_samples)
        return {n: int(c) * self.seq_len for n, c in zip(self.names, counts)}

    def supported_steps(self) -> int | None:
        """With on_exhausted=stop: optimizer steps before any source would repeat a window."""
        if self.on_exhausted != "stop" or not self.global_batch_size:
            return None
        k, _ = self.mixture.first_repeat()
        return k // self.global_batch_size

    def mixture_report(self, steps: int) -> str:
        """Per-source draws over the planned run: tokens, share, epochs; warns about repeats."""
        total = steps * self.global_batch_size
        counts = self.mixture.counts(total)
        lines = [f"mixture over {total:,} training windows of {self.seq_len} tokens (block {self.mixture.B}):"]
        for name, p, c, w in zip(self.names, self.mixture.p, counts, self.train_windows.n_windows):
            epochs = c / w
            lines.append(f"  {name}: weight {p:.3f}, {int(c) * self.seq_len:,} tokens ({c / max(1, total):.3f} of the mix), "
                         f"{epochs:.2f} epochs of its {w:,} windows")
        k, s = self.mixture.first_repeat()
        if k < total:
            if self.on_exhausted == "stop":
                lines.append(f"  data.on_exhausted=stop: source {self.names[s]!r} runs out at step {k // self.global_batch_size}: "
                             "the run stops there")
            else:
                message = (f"source {self.names[s]!r} runs out at step {k // self.global_batch_size} and is repeated "
                           "(data.on_exhausted=repeat)")
                lines.append(f"  warning: {message}")  # once, in the report (a Python warning would repeat it)
        return "\n".join(lines)

    # ------------------------------------------------------------ Lightning hooks

    def train_dataloader(self) -> DataLoader:
        from llmexp.parallel.parallelize import data_parallel_rank_and_size

        dp_rank, dp_size = data_parallel_rank_and_size(self.trainer)  # TP ranks read the same batches
        start = self.resume_start(dp_size)
        total = self.total_micro_batches * self.micro
        stop = self.supported_steps()
        if stop is not None and self.trainer is not None and stop < self.trainer.max_steps:
            # A source ran out and the config says stop: end the run at the last full step.
            self.trainer.fit_loop.epoch_loop.max_steps = stop
            total = min(total, stop * self.global_batch_size // dp_size)
        sampler = MixtureSampler(
            self.mixture, start=start, length=max(0, total - start),
            rank=dp_rank, world_size=dp_size,
        )
        return DataLoader(self.train_windows, batch_size=self.micro, sampler=sampler, num_workers=self.num_workers,
                          drop_last=True, persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        val = ShardWindows(self.data.shards("val"), self.data.dtype, self.seq_len)
        items = val.interleaved(self.val_batches * self.val_micro)
        if not items:
            n = sum(n for shards in self.data.shards("val") for _, n in shards)
            raise ValueError(
                f"validation text has {n} tokens: shorter than one sequence of {self.seq_len}; "
                "raise data.val_fraction or lower trainer.seq_len"
            )
        return DataLoader(_Items(val, items), batch_size=self.val_micro, shuffle=False, num_workers=0)


def token_datamodule(cfg, plan, data: PreparedData) -> TokenDataModule:
    """The pretraining stage's data: packed token windows of the prepared mix."""
    t = cfg.trainer
    return TokenDataModule(
        data, seq_len=plan.seq_len, micro_batch_size=plan.loader_batch_size,
        total_micro_batches=plan.steps * plan.loader_batches_per_step, val_batches=t.val_batches,
        seed=t.seed, num_workers=t.num_workers, on_exhausted=cfg.data.on_exhausted,
        global_batch_size=plan.global_batch_size, val_batch_size=t.micro_batch_size,
    )
