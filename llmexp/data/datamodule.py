"""The LightningDataModule for token streams: resumable training order, fixed validation set."""
from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from llmexp.data.prepare import PreparedData
from llmexp.data.sampler import ResumableSampler
from llmexp.data.tokens import windows


class WindowDataset(Dataset):
    """Window i: tokens[i*T : i*T + T + 1], inputs and shifted targets in one row."""

    def __init__(self, tokens: np.ndarray, seq_len: int):
        self.tokens, self.seq_len = tokens, seq_len
        self.n = windows(len(tokens), seq_len)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        start = i * self.seq_len
        return torch.from_numpy(np.asarray(self.tokens[start : start + self.seq_len + 1], dtype=np.int64))


class TokenDataModule(L.LightningDataModule):
    def __init__(
        self, data: PreparedData, seq_len: int, micro_batch_size: int, total_micro_batches: int,
        val_batches: int, seed: int, num_workers: int = 0,
    ):
        super().__init__()
        self.data, self.seq_len, self.micro = data, seq_len, micro_batch_size
        self.total_micro_batches = total_micro_batches  # per rank, for the whole run
        self.val_batches, self.seed, self.num_workers = val_batches, seed, num_workers
        self.resume_samples = 0  # samples this rank consumed before a restart

    def train_dataloader(self) -> DataLoader:
        dataset = WindowDataset(self.data.train, self.seq_len)
        total = self.total_micro_batches * self.micro
        sampler = ResumableSampler(
            len(dataset), self.seed, start=self.resume_samples, length=max(0, total - self.resume_samples),
            rank=self.trainer.global_rank, world_size=self.trainer.world_size,
        )
        return DataLoader(dataset, batch_size=self.micro, sampler=sampler, num_workers=self.num_workers,
                          drop_last=True, persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        dataset = WindowDataset(self.data.val, self.seq_len)
        if len(dataset) == 0:
            raise ValueError(
                f"validation text has {len(self.data.val)} tokens: shorter than one sequence of {self.seq_len}; "
                "raise data.val_fraction or lower trainer.seq_len"
            )
        return DataLoader(dataset, batch_size=self.micro, shuffle=False, num_workers=0)

    def state_dict(self) -> dict[str, Any]:
        # Checkpoints are taken at optimizer-step boundaries, so this is exact.
        t = self.trainer
        return {"consumed_samples": t.global_step * t.accumulate_grad_batches * self.micro}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.resume_samples = int(state["consumed_samples"])


def token_datamodule(cfg, plan, data: PreparedData) -> TokenDataModule:
    """The pretraining stage's data: packed token windows of the prepared mix."""
    t = cfg.trainer
    return TokenDataModule(
        data, seq_len=plan.seq_len, micro_batch_size=t.micro_batch_size,
        total_micro_batches=plan.steps * plan.grad_accumulation, val_batches=t.val_batches,
        seed=t.seed, num_workers=t.num_workers,
    )
