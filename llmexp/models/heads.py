"""Scalar heads on a Llama's final hidden states: reward models and PPO's value model.
Kept outside llama.py: the network knows nothing of the stages that read it."""
from __future__ import annotations

import torch
from torch import nn

from llmexp.models.llama import Llama
from llmexp.models.tp_plan import Plan, Rowwise, prefixed


class ScalarModel(nn.Module):
    """`backbone` (a Llama) + a linear head to one number per position."""

    def __init__(self, backbone: Llama):
        super().__init__()
        self.backbone = backbone
        self.shape = backbone.shape
        self.head = nn.Linear(backbone.shape.d_model, 1)
        nn.init.zeros_(self.head.weight)  # starts neutral: every sequence scores 0
        nn.init.zeros_(self.head.bias)

    @property
    def layers(self) -> nn.ModuleList:  # for apply_parallelism, which works per block
        return self.backbone.layers

    def tensor_parallel_plan(self) -> Plan:
        """The backbone's plan, and the head split by its input features: it reads the final
        norm's sequence-split output, and its per-rank partial scores are all-reduced whole."""
        return {**prefixed(self.backbone.tensor_parallel_plan(), "backbone"),
                "head": Rowwise(input="sequence", output="replicate")}

    def forward(self, tokens: torch.Tensor, **kwargs) -> torch.Tensor:
        """(batch, seq) scores, one per position."""
        return self.head(self.backbone.hidden_states(tokens, **kwargs)).squeeze(-1)

    def score(self, tokens: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """One score per sequence: read at each row's final real token `last` (right padding)."""
        values = self(tokens)
        return values.gather(1, last[:, None]).squeeze(1)
