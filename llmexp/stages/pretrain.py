"""Pretraining: next-token prediction over packed windows of documents."""
from __future__ import annotations

import functools
from typing import Any, Callable

import torch
import torch.nn.functional as F

from llmexp.plan import layout_of
from llmexp.stages.base import StageModule
from llmexp.stages.linear_cross_entropy import linear_cross_entropy


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())


@functools.cache
def compiled_next_token_loss() -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """`next_token_loss` under torch.compile (parallelism.compile): Inductor fuses the fp32 cast,
    log-softmax and NLL (and their backward) into passes over the logits, so neither the fp32 copy
    of bf16 logits nor the full log-probabilities are written out; eager log-softmax forward and
    backward were ~3.4% of an fp32 step, plus the 32 MB cast under bf16. Same math: the loss
    agrees with the eager one to fp32 rounding. Built once per process (dynamo caches per code)."""
    return torch.compile(next_token_loss)


class PretrainModule(StageModule):
    pipeline_loss = staticmethod(next_token_loss)

    @functools.cached_property
    def whole_output_layer(self) -> bool:
        """Whether this rank holds the output projection as a plain tensor (single, ddp), so the
        projection and the loss can run as one chunked node; sharded layouts keep nn.Linear,
        whose hooks gather the weight."""
        return layout_of(self.cfg).strategy in ("single", "ddp")

    def loss(self, batch: torch.Tensor) -> tuple[torch.Tensor, int]:
        """`batch` is (B, T+1) token ids: inputs are the first T, targets the last T."""
        inputs, targets = batch[:, :-1], batch[:, 1:]
        n_tokens, positions = targets.numel(), None  # the batch's tokens, which a CP group shares
        if self.context_parallel is not None:  # this rank's chunks of every sequence (ring attention)
            inputs, targets, positions = self.context_parallel.shard(inputs, targets)
        # Under parallelism.compile the compiled loss measured faster (scripts/bench_litgpt.py).
        if torch.is_grad_enabled() and self.whole_output_layer and not self.cfg.parallelism.compile:
            hidden = self.model.hidden_states(inputs, positions)
            return linear_cross_entropy(hidden, self.model.output.weight, targets), n_tokens
        loss_fn = compiled_next_token_loss() if self.cfg.parallelism.compile else next_token_loss
        return loss_fn(self(inputs, positions=positions), targets), n_tokens

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        if self.pipeline is not None:  # the loader's batch is the whole step, split by the schedule
            return self.pipeline_step(batch[:, :-1], batch[:, 1:])
        return super().training_step(batch, batch_idx)

    def validation_loss(self, batch: Any) -> torch.Tensor:
        if self.pipeline is not None:
            return self.pipeline.evaluate(batch[:, :-1], batch[:, 1:])
        return super().validation_loss(batch)
