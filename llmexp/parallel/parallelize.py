"""Tensor parallelism (DTensor) and FSDP2 applied to a plain Llama from outside, in
torchtitan's order: TP, then activation checkpointing and compile per block, then FSDP.

Lightning's ModelParallelStrategy builds the 2-D device mesh ("data_parallel",
"tensor_parallel") and hands it to StageModule.configure_model, which calls `parallelize`.
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, Optional

import torch
from torch import nn

from llmexp.config.schema import ParallelismConfig
from llmexp.parallel.apply import apply_parallelism
from llmexp.parallel.tensor import apply_tensor_parallel


def build_model(make: Callable[[], nn.Module], cfg: ParallelismConfig, device_mesh, device: torch.device,
                n_params: int, seed: int, init_from: Optional[str] = None, apply: Optional[Callable] = None) -> nn.Module:
    """The model, parallelised (by `parallelize`, or `apply(model, cfg, device_mesh)`: pipeline
    stages). Under fsdp/tp with `meta_init` (default: from 1B parameters) it is built on the meta
    device, sharded, and only then allocated and initialised, shard by shard: no rank ever holds
    the whole model (a 70B model is 280 GB in fp32)."""
    from llmexp.checkpoints import load_model_weights

    from llmexp.hf_config import is_hf_folder

    meta = device_mesh is not None and (cfg.meta_init if cfg.meta_init is not None else n_params >= 1e9)
    meta = meta and not (init_from and is_hf_folder(init_from))  # transformers weights load into a whole model
    with torch.device("meta") if meta else nullcontext():
        model = make()
    if init_from and not meta:
        load_model_weights(model, init_from)
    model = (apply or parallelize)(model, cfg, device_mesh)
    if meta:
        _materialize(model, device, seed, init_from)
    return model


def _materialize(model: nn.Module, device: torch.device, seed: int, init_from: Optional[str]) -> None:
    import torch.distributed as dist

    from llmexp.models.rope import rope_tables

    model.to_empty(device=device)
    shape = model.shape
    cos, sin = rope_tables(shape.head_dim, shape.max_seq_len, shape.rope_theta, shape.rope_scaling)  # buffers, not weights
    model.rope_cos.copy_(cos)
    model.rope_sin.copy_(sin)
    if device.type == "cpu":
        # DTensor's offset RNG tracker serves CUDA only: on the CPU every rank would draw the same
        # numbers for its shard (identical heads on every TP rank); a per-rank seed keeps them apart.
        torch.manual_seed(seed + dist.get_rank())
    with torch.no_grad():
        model.reset_parameters()
    if init_from:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        from llmexp.checkpoints import load_checkpoint, model_state_dict

        state = model_state_dict(load_checkpoint(init_from))  # full tensors, sharded as they load
        own = model.state_dict().keys()  # a pipeline stage holds only its blocks
        state = {name: tensor for name, tensor in state.items() if name in own}
        set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True))


def parallelize(model: nn.Module, cfg: ParallelismConfig, device_mesh=None) -> nn.Module:
    """`device_mesh`: the LightningModule's mesh under ModelParallelStrategy, else None
    (single, ddp, deepspeed: the strategy wraps the model itself)."""
    if cfg.float8:  # GPU only (validated): before FSDP, so it can gather the float8 shards
        from llmexp.parallel.float8 import apply_float8

        apply_float8(model, fsdp=device_mesh is not None and cfg.strategy in ("fsdp", "fsdp_tp"))
    if device_mesh is not None and device_mesh["tensor_parallel"].size() > 1:
        apply_tensor_parallel(model, device_mesh["tensor_parallel"])
    apply_parallelism(model, cfg)  # activation checkpointing and compile per block
    if device_mesh is not None and cfg.strategy in ("fsdp", "fsdp_tp", "hsdp"):
        # hsdp: FSDP2 over the 2-D ("replicate", "shard") mesh: sharded within, replicated across
        apply_fsdp(model, device_mesh["replicate", "shard"] if cfg.strategy == "hsdp" else device_mesh["data_parallel"], cfg)
    return model


def apply_fsdp(model: nn.Module, dp_mesh, cfg: ParallelismConfig) -> None:
    """FSDP2: each block is one all-gather/reduce-scatter unit, the root holds the embedding,
    final norm and output projection (kept together, so tied embeddings stay one parameter)."""
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard

    kwargs = {"mesh": dp_mesh}
    if cfg.precision in ("bf16-mixed", "16-mixed"):
        # Compute in half precision, reduce gradients and keep master weights in fp32.
        half = torch.bfloat16 if cfg.precision == "bf16-mixed" else torch.float16
        kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=half, reduce_dtype=torch.float32)
    if cfg.cpu_offload:
        kwargs["offload_policy"] = CPUOffloadPolicy()
    for block in model.layers:
        fully_shard(block, reshard_after_forward=cfg.reshard_after_forward, **kwargs)
    fully_shard(model, **kwargs)


def set_gradient_sync(module: nn.Module, enabled: bool) -> None:
    """FSDP2's reduce-scatter of gradients on (enabled) or off for the next backward, on every
    FSDP unit in `module`. Lightning's ModelParallelStrategy has no no_sync for FSDP2 (its
    block_backward_sync only covers DDP), so the stage module calls this per micro-batch."""
    from torch.distributed.fsdp import FSDPModule

    for unit in module.modules():
        if isinstance(unit, FSDPModule):
            unit.set_requires_gradient_sync(enabled, recurse=False)


def data_parallel_rank_and_size(trainer) -> tuple[int, int]:
    """(rank, size) of this process among the ranks that read different batches: the global
    rank/world for ddp, the mesh's data-parallel dimension for fsdp/tp (every rank of a TP group
    must see the same batch)."""
    kwargs: Optional[dict] = getattr(trainer.strategy, "distributed_sampler_kwargs", None)
    if not kwargs:
        return 0, 1
    return int(kwargs["rank"]), int(kwargs["num_replicas"])
