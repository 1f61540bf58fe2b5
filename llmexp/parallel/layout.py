"""The device layout of a run, as pure arithmetic (no torch): which strategy, how many
data-parallel replicas/shards (dp) and tensor-parallel ranks (tp), dp x tp = devices x nodes.

Shared by the validate pass (rules), the derive pass (plan: memory per device, accumulation)
and the lower pass (the Lightning strategy), so all three agree on one layout.
"""
from __future__ import annotations

from dataclasses import dataclass

from llmexp.config.schema import Config

# Strategies that run through Lightning's ModelParallelStrategy (FSDP2 and/or DTensor TP).
MODEL_PARALLEL = ("fsdp", "tp", "fsdp_tp")
# Strategies whose parameters, gradients and optimizer state are sharded over dp.
SHARDED = ("fsdp", "fsdp_tp", "deepspeed")


@dataclass(frozen=True)
class Layout:
    strategy: str  # single | ddp | fsdp | tp | fsdp_tp | deepspeed (never auto)
    dp: int  # data-parallel degree: distinct batches per step, and the FSDP shard count
    tp: int  # tensor-parallel degree: ranks that split each block and see the same batch

    @property
    def world(self) -> int:
        return self.dp * self.tp


def world_size(cfg: Config) -> int:
    return cfg.trainer.devices * cfg.trainer.num_nodes


def _replica_bytes(cfg: Config) -> float:
    """Per-device bytes of a full replica (ddp), from the plan's own memory model."""
    from llmexp.plan import count_params, estimate_memory, seq_len_of, vocab_size_of

    params = count_params(cfg.model, vocab_size_of(cfg))
    memory = estimate_memory(cfg, params, seq_len_of(cfg), Layout("ddp", world_size(cfg), 1))
    return memory.total


def auto_layout(cfg: Config) -> Layout:
    """`strategy=auto`: one device -> single; a full replica fits in 85% of the accelerator's
    memory -> ddp; otherwise fsdp over every device, and 2-D fsdp_tp (tp within a node, at most
    8, dividing the heads) when even a 1/world shard of weights and state would not fit."""
    from llmexp.accelerators import ACCELERATORS

    world = world_size(cfg)
    if world == 1:
        return Layout("single", 1, 1)
    budget = 0.85 * ACCELERATORS[cfg.plan.accelerator].memory_bytes
    if _replica_bytes(cfg) <= budget:
        return Layout("ddp", world, 1)
    from llmexp.plan import count_params, vocab_size_of

    n = count_params(cfg.model, vocab_size_of(cfg)).total
    if 16 * n / world <= 0.5 * budget:  # fp32 weights + grads + 2 AdamW moments, sharded
        return Layout("fsdp", world, 1)
    m = cfg.model
    kv = m.n_kv_heads or m.n_heads
    for tp in (8, 4, 2):
        if cfg.trainer.devices % tp == 0 and kv % tp == 0 and m.ffn_dim % tp == 0:
            return Layout("fsdp_tp", world // tp, tp)
    return Layout("fsdp", world, 1)


def layout_of(cfg: Config) -> Layout:
    p = cfg.parallelism
    world = world_size(cfg)
    if p.strategy == "auto":
        return auto_layout(cfg)
    if p.strategy == "tp":
        return Layout("tp", 1, world)  # every device splits the blocks; one batch per step
    if p.strategy == "fsdp_tp":
        tp = p.tensor_parallel_size or cfg.trainer.devices  # default: TP within a node, FSDP across
        return Layout("fsdp_tp", max(1, world // tp), tp)
    return Layout(p.strategy, world, 1)
