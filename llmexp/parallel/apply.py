"""Activation checkpointing and torch.compile applied per transformer block, from outside
the model (as torchtitan does): the model file never knows about either."""
from __future__ import annotations

import torch
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

from llmexp.config.schema import ParallelismConfig

# Selective checkpointing keeps what is expensive to recompute (matmuls, attention) and
# recomputes what is cheap and memory-hungry (norms, RoPE, SwiGLU's pointwise ops).
_SAVE = {
    torch.ops.aten.mm.default,
    torch.ops.aten.addmm.default,
    torch.ops.aten.bmm.default,
    torch.ops.aten._scaled_dot_product_flash_attention.default,
    torch.ops.aten._scaled_dot_product_efficient_attention.default,
    torch.ops.aten._scaled_dot_product_cudnn_attention.default,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default,
}


def _selective_policy(ctx, op, *args, **kwargs):
    from torch.utils.checkpoint import CheckpointPolicy

    return CheckpointPolicy.MUST_SAVE if op in _SAVE else CheckpointPolicy.PREFER_RECOMPUTE


def _selective_context():
    from torch.utils.checkpoint import create_selective_checkpoint_contexts

    return create_selective_checkpoint_contexts(_selective_policy)


def apply_parallelism(model: nn.Module, cfg: ParallelismConfig) -> nn.Module:
    layers = model.layers
    for i, block in enumerate(layers):
        if cfg.activation_checkpointing:
            if cfg.activation_checkpointing_mode == "selective":
                block = checkpoint_wrapper(block, preserve_rng_state=False, context_fn=_selective_context)
            else:
                block = checkpoint_wrapper(block, preserve_rng_state=False)
        if cfg.compile:
            block = torch.compile(block)
        layers[i] = block
    return model
