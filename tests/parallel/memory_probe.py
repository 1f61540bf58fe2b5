"""Measure what one training step actually keeps per rank, for a layout, on the CPU (gloo):

- weights, gradients, AdamW state: bytes of the tensor storages each rank holds (the local
  shards of DTensors), after a forward, backward and fused AdamW step;
- activations: bytes of the distinct tensor storages autograd saves for backward during the
  forward (torch.autograd.graph.saved_tensors_hooks), parameters, buffers and FSDP's
  all-gathered weights excluded.

Not measured: FSDP's transient all-gather buffers (the plan's `gathered`), allocator slack.

    python -m tests.parallel.memory_probe <layout> <world> <out.json> [overrides...]

Rank 0 writes {"measured": {...}, "plan": {...}} (bytes, per device); the plan is
llmexp.derive's memory model for the same config.
"""
from __future__ import annotations

import json
import os
import socket
import sys

import torch
import torch.distributed as dist


def _storage(t: torch.Tensor):
    from torch.distributed.tensor import DTensor

    local = t._local_tensor if isinstance(t, DTensor) else t  # DTensor: this rank's shard
    local = getattr(local, "elem", local)  # an AsyncCollectiveTensor wraps its (pending) result
    s = local.untyped_storage()
    return s.data_ptr(), s.nbytes()


def _bytes(tensors) -> int:
    seen = {}
    for t in tensors:
        if t is not None:
            ptr, n = _storage(t)
            seen[ptr] = n
    return sum(seen.values())


def _gathered_weights(model) -> set:
    """Storages of the weights FSDP2 has all-gathered: the plan counts them as `gathered`, not
    as activations, though linear layers save them for backward."""
    from torch.distributed.fsdp import FSDPModule

    ptrs = set()
    for module in model.modules():
        if isinstance(module, FSDPModule):
            group = module._get_fsdp_state()._fsdp_param_group
            for fsdp_param in group.fsdp_params if group else ():
                unsharded = getattr(fsdp_param, "_unsharded_param", None)
                if unsharded is not None:
                    ptrs.add(_storage(unsharded)[0])
    return ptrs


def measure(cfg) -> dict:
    from llmexp.models import Llama
    from llmexp.optim import build_optimizer
    from llmexp.layout import MODEL_PARALLEL
    from llmexp.parallel.parallelize import parallelize
    from llmexp.plan import derive, layout_of
    from llmexp.stages.base import model_shape

    plan = derive(cfg)
    layout = layout_of(cfg)
    mesh = None
    if layout.strategy in MODEL_PARALLEL:
        from torch.distributed.device_mesh import init_device_mesh

        mesh = init_device_mesh("cpu", (layout.dp, layout.tp), mesh_dim_names=("data_parallel", "tensor_parallel"))
    torch.manual_seed(0)
    model = parallelize(Llama(model_shape(cfg, plan.vocab_size)), cfg.parallelism, mesh)
    if layout.strategy == "ddp":
        model = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = build_optimizer(model, cfg.optimizer, "cpu")
    static = {_storage(t)[0] for t in [*model.parameters(), *model.buffers()]}

    saved: dict[int, int] = {}

    def pack(t):
        if not isinstance(t, torch.nn.Parameter):
            ptr, n = _storage(t)
            if ptr not in static and ptr not in _gathered_weights(model):
                saved[ptr] = n
        return t

    tokens = torch.randint(0, plan.vocab_size, (cfg.trainer.micro_batch_size, plan.seq_len + 1))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits = model(tokens[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), tokens[:, 1:].flatten())
    activations = sum(saved.values())
    loss.backward()
    optimizer.step()
    params = list(model.parameters())
    state = [v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v) and v.numel() > 1]
    return {
        "measured": {
            "weights": _bytes(params),
            "gradients": _bytes(p.grad for p in params),
            "optimizer": _bytes(state),
            "activations": activations,
        },
        "plan": {k: getattr(plan.memory, k) for k in ("weights", "gradients", "optimizer", "activations", "gathered")},
    }


def _worker(rank: int, world: int, port: int, overrides: list, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    from llmexp.api import compose

    result = measure(compose(overrides))
    results = [None] * world
    dist.all_gather_object(results, result)
    if rank == 0:
        with open(out, "w") as f:
            json.dump(results, f, indent=2)
    dist.destroy_process_group()


def main(argv: list[str]) -> None:
    from tests.parallel.conftest import LAYOUTS, TINY

    layout, world, out, extra = argv[0], int(argv[1]), argv[2], argv[3:]
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    overrides = [*TINY, *LAYOUTS[layout], *extra]
    torch.multiprocessing.spawn(_worker, args=(world, port, overrides, out), nprocs=world)


if __name__ == "__main__":
    main(sys.argv[1:])
