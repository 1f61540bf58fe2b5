"""Context parallelism (parallelism.context_parallel_size): ranks of the FSDP data-parallel
dimension split each sequence and run ring attention over it
(torch.distributed.tensor.experimental.context_parallel), applied from outside the model.

NOT RUN ON A GPU in this task: torch's ring attention exists for CUDA's SDPA kernels only
(flash, efficient, cuDNN), so validation refuses CP on the CPU, and no multi-GPU machine was
available. The CPU tests cover validation, the plan, the strategy's sampler and the sharding of
a batch (`shard` on 2 gloo processes). What it does on GPUs:
- mesh: Lightning's ("data_parallel", "tensor_parallel") mesh with data_parallel = dp x cp;
  FSDP shards over all of it (torchtitan's dp_shard_cp), a (dp, cp, tp) mesh of the same ranks
  gives the CP groups;
- data: the ranks of a CP group read the same batch (ContextParallelStrategy's sampler);
- step: inputs, targets and RoPE positions are split into 2 x cp chunks, rank i keeping chunks
  i and 2cp-1-i (causal load balance), and SDPA runs as ring attention from the forward until
  the backward has run (the stage leaves the context in on_after_backward).
"""
from __future__ import annotations

from contextlib import ExitStack
from typing import Any, Optional

import torch
from lightning.pytorch.strategies import ModelParallelStrategy

from llmexp.config.schema import ParallelismConfig


class ContextParallelStrategy(ModelParallelStrategy):
    """Lightning's FSDP2/TP strategy whose data-parallel dimension holds dp x cp ranks, of which
    each group of cp consecutive ranks reads one batch."""

    def __init__(self, context_parallel_size: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.context_parallel_size = context_parallel_size

    @property
    def distributed_sampler_kwargs(self) -> dict[str, Any]:
        kwargs = super().distributed_sampler_kwargs
        cp = self.context_parallel_size
        return {"num_replicas": kwargs["num_replicas"] // cp, "rank": kwargs["rank"] // cp}


class ContextParallel:
    """One micro-batch's sequence split over the CP group, and ring attention until `leave`."""

    def __init__(self, mesh):
        self.mesh = mesh
        self._active = ExitStack()

    def shard(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(batch, seq) inputs and targets -> this rank's load-balanced chunks of them and their
        positions (RoPE reads positions, so the chunks need not be contiguous)."""
        from torch.distributed.tensor.experimental import context_parallel

        self.leave()
        b, t = inputs.shape
        positions = torch.arange(t, device=inputs.device).expand(b, t).contiguous()
        inputs, targets = inputs.contiguous(), targets.contiguous()
        buffers = [inputs, targets, positions]  # sharded in place along dim 1
        self._active.enter_context(context_parallel(self.mesh, buffers=buffers, buffer_seq_dims=[1, 1, 1],
                                                    no_restore_buffers=set(buffers)))
        return inputs, targets, positions

    def leave(self) -> None:
        """SDPA back to local attention (after the backward; validation: after the forward)."""
        self._active.close()


def context_parallel_of(device_mesh, cfg: ParallelismConfig) -> Optional[ContextParallel]:
    """The CP handle for the stage module, or None without context parallelism."""
    cp = cfg.context_parallel_size
    if device_mesh is None or cp == 1:
        return None
    from torch.distributed.device_mesh import init_device_mesh

    dp, tp = device_mesh["data_parallel"].size() // cp, device_mesh["tensor_parallel"].size()
    # Row-major like Lightning's mesh: data-parallel index = batch index x cp + CP index.
    mesh = init_device_mesh(device_mesh.device_type, (dp, cp, tp), mesh_dim_names=("batch", "context_parallel", "tensor"))
    return ContextParallel(mesh["context_parallel"])
