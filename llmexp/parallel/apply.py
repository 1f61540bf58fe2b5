"""Activation checkpointing and torch.compile applied per transformer block, from outside
the model (as torchtitan does): the model file never knows about either."""
from __future__ import annotations

import torch
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

from llmexp.config.schema import ParallelismConfig


def apply_parallelism(model: nn.Module, cfg: ParallelismConfig) -> nn.Module:
    layers = model.layers
    for i, block in enumerate(layers):
        if cfg.activation_checkpointing:
            block = checkpoint_wrapper(block, preserve_rng_state=False)
        if cfg.compile:
            block = torch.compile(block)
        layers[i] = block
    return model
