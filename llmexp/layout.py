"""The device layout of a run, as pure arithmetic (no torch): which strategy, how many
data-parallel replicas/shards (dp) and tensor-parallel ranks (tp), dp x tp = devices x nodes.

Shared by the validate pass (rules), the derive pass (plan: memory per device, accumulation,
and the choice behind `strategy=auto`) and the lower pass (the Lightning strategy), so all
three agree on one layout.
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
    cp: int = 1  # context-parallel degree: ranks that split each sequence and see the same batch (FSDP shards over dp x cp)

    @property
    def world(self) -> int:
        return self.dp * self.cp * self.tp


def world_size(cfg: Config) -> int:
    return cfg.trainer.devices * cfg.trainer.num_nodes


def explicit_layout(cfg: Config) -> Layout:
    """The layout of a named strategy (`auto` is the planner's choice: llmexp.plan.layout_of)."""
    p = cfg.parallelism
    world, cp = world_size(cfg), p.context_parallel_size
    if p.strategy == "tp":
        return Layout("tp", 1, world)  # every device splits the blocks; one batch per step
    if p.strategy == "fsdp_tp":
        tp = p.tensor_parallel_size or cfg.trainer.devices  # default: TP within a node, FSDP across
        return Layout("fsdp_tp", max(1, world // (tp * cp)), tp, cp)
    if p.strategy == "fsdp":
        return Layout("fsdp", max(1, world // cp), 1, cp)
    return Layout(p.strategy, world, 1)
