"""The device layout of a run, as pure arithmetic (no torch): which strategy, how many
data-parallel replicas/shards (dp), context-parallel ranks (cp), tensor-parallel ranks (tp) and
pipeline stages' ranks (pp), dp x cp x tp x pp = devices x nodes.

Shared by the validate pass (rules), the derive pass (plan: memory per device, accumulation,
and the choice behind `strategy=auto`) and the lower pass (the Lightning strategy), so all
three agree on one layout.
"""
from __future__ import annotations

from dataclasses import dataclass

from llmexp.config.schema import Config

# Strategies that run through Lightning's ModelParallelStrategy (FSDP2, DTensor TP, pipelining).
MODEL_PARALLEL = ("fsdp", "tp", "fsdp_tp", "hsdp", "pp", "fsdp_pp", "fsdp_tp_pp")
# Strategies whose parameters, gradients and optimizer state are sharded over (part of) dp.
SHARDED = ("fsdp", "fsdp_tp", "hsdp", "fsdp_pp", "fsdp_tp_pp", "deepspeed")
# Strategies that cut the model into pipeline stages (torch.distributed.pipelining).
PIPELINED = ("pp", "fsdp_pp", "fsdp_tp_pp")


@dataclass(frozen=True)
class Layout:
    strategy: str  # single | ddp | fsdp | tp | fsdp_tp | hsdp | pp | fsdp_pp | fsdp_tp_pp | deepspeed (never auto)
    dp: int  # data-parallel degree: distinct batches per step
    tp: int  # tensor-parallel degree: ranks that split each block and see the same batch
    cp: int = 1  # context-parallel degree: ranks that split each sequence and see the same batch (FSDP shards over dp x cp)
    pp: int = 1  # pipeline-parallel degree: ranks that each hold some of the blocks
    replicate: int = 1  # hsdp: replicas of the model (dp = replicate x FSDP shard degree)

    @property
    def world(self) -> int:
        return self.dp * self.cp * self.tp * self.pp

    @property
    def shard(self) -> int:
        """How many ranks share one copy of the weights, gradients and optimizer state (FSDP: over
        the CP ranks too; hsdp: its shard degree only, the replicas hold the same shard)."""
        return self.dp * self.cp // self.replicate if self.strategy in SHARDED else 1

    def describe(self) -> str:
        """As the plan names it: `fsdp`, `fsdp_tp (dp 32 x tp 2)`, `fsdp_pp (dp 8 x pp 4)`, ..."""
        if self.tp == 1 and self.cp == 1 and self.pp == 1 and self.replicate == 1:
            return self.strategy
        dp = f"dp {self.dp} = {self.replicate} replicas x shard {self.shard}" if self.replicate > 1 else f"dp {self.dp}"
        rest = [f"{name} {n}" for name, n in (("cp", self.cp), ("tp", self.tp), ("pp", self.pp)) if n > 1]
        return f"{self.strategy} ({' x '.join([dp, *rest])})"


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
    if p.strategy == "hsdp":
        shard = p.shard_size or cfg.trainer.devices  # default: shard within a node, replicate across
        return Layout("hsdp", world, 1, replicate=max(1, world // shard))
    if p.strategy == "pp":
        return Layout("pp", 1, 1, pp=world)  # every device holds a stage; one batch per step
    if p.strategy == "fsdp_pp":
        pp = p.pipeline_parallel_size or cfg.trainer.num_nodes  # default: stages across nodes, FSDP within
        return Layout("fsdp_pp", max(1, world // pp), 1, pp=pp)
    if p.strategy == "fsdp_tp_pp":  # TP within a node, stages across nodes, FSDP over what is left
        tp, pp = p.tensor_parallel_size or cfg.trainer.devices, p.pipeline_parallel_size or cfg.trainer.num_nodes
        return Layout("fsdp_tp_pp", max(1, world // (tp * pp)), tp, pp=pp)
    return Layout(p.strategy, world, 1)


def stage_bounds(n_layers: int, stages: int, split_points=None) -> list[tuple[int, int]]:
    """[start, end) block indices of every pipeline stage: cut at `split_points` (the first block
    of every stage but the first), else equal stages (validation checks they divide)."""
    points = list(split_points) if split_points is not None else [n_layers * s // stages for s in range(1, stages)]
    starts = [0, *points]
    return list(zip(starts, [*points, n_layers]))


def stages_of_rank(rank: int, pp: int, stages_per_rank: int) -> list[int]:
    """The stages pipeline rank `rank` runs: one, or every pp-th (looped, as interleaved 1F1B wants)."""
    return [rank + k * pp for k in range(stages_per_rank)]
