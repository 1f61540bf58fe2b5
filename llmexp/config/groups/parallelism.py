"""parallelism group: how the model is laid out over devices (docs/parallelism.md). Applied from
outside the model by llmexp/parallel/; the layout (dp x tp x pp = devices x nodes) by llmexp/layout.py."""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import List, Literal, Optional

from llmexp.config.checks import choice, one_of, positive, require

Strategy = Literal["auto", "single", "ddp", "fsdp", "tp", "fsdp_tp", "hsdp", "pp", "fsdp_pp", "fsdp_tp_pp", "deepspeed"]
PipelineSchedule = Literal["gpipe", "1f1b", "interleaved_1f1b"]
Precision = Literal["32", "bf16-mixed", "16-mixed", "bf16-true"]


@dataclass
class ParallelismConfig:
    name: str = "auto"
    strategy: str = choice(Strategy, "auto")
    precision: str = choice(Precision, "32")
    activation_checkpointing: bool = False
    # full: whole blocks recomputed | selective: matmul/attention outputs kept
    activation_checkpointing_mode: str = choice(Literal["full", "selective"], "full")
    compile: bool = False  # torch.compile per block
    tensor_parallel_size: Optional[int] = None  # fsdp_tp, fsdp_tp_pp: TP degree (None: trainer.devices, TP within a node)
    reshard_after_forward: bool = True  # fsdp: free gathered weights after forward (ZeRO-3); false: ZeRO-2-like
    cpu_offload: bool = False  # fsdp: parameters, gradients and optimizer state live on the CPU
    distributed_checkpoint: bool = True  # fsdp/tp: checkpoints are DCP folders of per-rank shards
    meta_init: Optional[bool] = None  # fsdp/tp: build on the meta device, initialise shards only (None: from 1B params)
    deepspeed_stage: int = 3  # deepspeed: ZeRO stage 2 or 3
    # GPU only. CP: ranks of the data-parallel dimension that split each sequence (ring attention),
    # sharing a batch; FSDP shards over dp x cp. float8: block matmuls in float8 (torchao).
    context_parallel_size: int = 1
    float8: bool = False
    shard_size: Optional[int] = None  # hsdp: FSDP shard degree (None: trainer.devices; replicas across nodes)
    pipeline_parallel_size: Optional[int] = None  # fsdp_pp, fsdp_tp_pp: pipeline degree (None: trainer.num_nodes); pp: every device
    # Pipeline schedule (torch.distributed.pipelining); the micro-batches of one optimizer step are its micro-batches.
    pp_schedule: str = choice(PipelineSchedule, "1f1b")
    pp_stages_per_rank: int = 1  # interleaved_1f1b: virtual stages per rank (>= 2); others: 1
    pp_split_points: Optional[List[int]] = None  # first block of every stage but the first (None: equal stages)


def check_parallelism(p: ParallelismConfig) -> None:
    if p.strategy == "deepspeed":
        require(importlib.util.find_spec("deepspeed") is not None, "parallelism.strategy", p.strategy,
                "needs the deepspeed package (pip install deepspeed), which is not installed; fsdp gives ZeRO-3 without it")
        one_of("parallelism.deepspeed_stage", p.deepspeed_stage, (2, 3))
    if p.cpu_offload:
        require(p.strategy in ("fsdp", "deepspeed"), "parallelism.cpu_offload", True, f"offload is an fsdp or deepspeed option; strategy is {p.strategy}")
    positive("parallelism.context_parallel_size", p.context_parallel_size)
    if p.context_parallel_size > 1:
        require(p.strategy in ("fsdp", "fsdp_tp"), "parallelism.context_parallel_size", p.context_parallel_size,
                f"context parallelism splits the fsdp data-parallel dimension: use parallelism=fsdp or fsdp_tp (not {p.strategy})")
    if p.float8:
        require(p.strategy in ("single", "ddp", "fsdp"), "parallelism.float8", True,
                f"float8 runs under single, ddp or fsdp (not {p.strategy}: torchao's float8 TP styles are not applied)")
        require(p.precision in ("bf16-mixed", "bf16-true"), "parallelism.float8", True,
                f"float8 matmuls sit in bf16 training: set parallelism.precision=bf16-mixed or bf16-true (not {p.precision})")
    positive("parallelism.pp_stages_per_rank", p.pp_stages_per_rank)
    if p.pp_schedule == "interleaved_1f1b":
        require(p.pp_stages_per_rank >= 2, "parallelism.pp_stages_per_rank", p.pp_stages_per_rank,
                "interleaved_1f1b runs >= 2 virtual stages per rank (1 is plain 1f1b)")
    else:
        require(p.pp_stages_per_rank == 1, "parallelism.pp_stages_per_rank", p.pp_stages_per_rank,
                f"only interleaved_1f1b runs several stages per rank; pp_schedule is {p.pp_schedule}")
