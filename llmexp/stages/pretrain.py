"""Pretraining: next-token prediction over packed windows of documents."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from llmexp.stages.base import StageModule


class PretrainModule(StageModule):
    def loss(self, batch: torch.Tensor) -> tuple[torch.Tensor, int]:
        """`batch` is (B, T+1) token ids: inputs are the first T, targets the last T."""
        inputs, targets = batch[:, :-1], batch[:, 1:]
        n_tokens, positions = targets.numel(), None  # the batch's tokens, which a CP group shares
        if self.context_parallel is not None:  # this rank's chunks of every sequence (ring attention)
            inputs, targets, positions = self.context_parallel.shard(inputs, targets)
        logits = self(inputs, positions=positions)
        loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
        return loss, n_tokens
