"""Pipeline parallelism (pp, fsdp_pp, fsdp_tp_pp) with torch.distributed.pipelining, as torchtitan does it.

Every rank builds the whole model (on the meta device from 1B parameters), then keeps only the
blocks of its stages: `model.layers` becomes a ModuleDict keyed by the blocks' indices in the full
model, the embedding stays on the first stage, the final norm and output projection on the last.
Parameter names stay the full model's (`model.layers.17.attention.wq.weight`), so DCP checkpoints
of any layout resume here and a pipeline's checkpoints resume (or consolidate) anywhere.

Each stage the rank runs (one; several for interleaved 1F1B) is a `StagePart` over those shared
modules, wrapped in a `PipelineStage`. Per part, in torchtitan's order: the model's TP plan on the
modules the part holds (fsdp_tp_pp), activation checkpointing and compile per block, FSDP2 over the
mesh's "shard" dimension (fsdp_pp, fsdp_tp_pp). The schedule runs the forward and backward of all micro-batches of one
optimizer step; the stage module then clips, steps and logs (llmexp/stages/pretrain.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.distributed as dist
from torch import nn

from llmexp.config.schema import Config
from llmexp.layout import stage_bounds, stages_of_rank
from llmexp.parallel.apply import apply_parallelism
from llmexp.parallel.parallelize import apply_fsdp, build_model
from llmexp.parallel.tensor import apply_tensor_parallel


class StagePart(nn.Module):
    """One pipeline stage of a cut Llama: its blocks, plus the embedding (first stage) or the
    final norm and output projection (last stage). The modules are the cut model's own (shared,
    not copied); the RoPE tables are read from it, wherever Lightning has moved its buffers.

    Under tensor parallelism the residual stream is sequence-parallel: a stage passes on, and
    receives, this TP rank's slice of the sequence, (batch, seq / tp, d_model), as a plain tensor.
    Each pipeline group links the ranks of one TP coordinate, so slice k goes to the next stage's
    TP rank k, whose first norm reads exactly that slice (Shard(1)): no gather at the boundary, tp
    times fewer bytes on the wire. torchtitan does the same (its stages' I/O shape is
    (batch, seq_len // tp, dim)); only the logits of the last stage are whole."""

    def __init__(self, model: nn.Module, blocks: list[str], first: bool, last: bool, sequence_shards: int = 1):
        super().__init__()
        self.tok_embeddings = model.tok_embeddings if first else None
        self.layers = nn.ModuleList(model.layers[key] for key in blocks)
        self.norm = model.norm if last else None
        self.output = model.output if last else None
        self.sequence_shards = sequence_shards  # the TP degree: hidden states hold seq / tp positions
        self.__dict__["root"] = model  # not a submodule: its parameters belong to the stage module

    def tensor_parallel_plan(self):
        """The model's plan, for the modules this stage holds: a middle stage has no embedding,
        norm or output projection, so their entries are left out here, by name; every entry
        kept must still match a module (llmexp/parallel/tensor.py)."""
        held = {name for name, _ in self.named_children()}
        return {path: style for path, style in self.root.tensor_parallel_plan().items() if path.split(".")[0] in held}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Token ids (first stage) or hidden states -> hidden states, or logits (last stage)."""
        t = x.shape[1] if self.tok_embeddings is not None else x.shape[1] * self.sequence_shards  # whole sequence
        if self.tok_embeddings is not None:
            x = self.tok_embeddings(x)
        cos, sin = self.root.rope_cos[:t], self.root.rope_sin[:t]
        for layer in self.layers:
            x = layer(x, cos, sin)
        return self.output(self.norm(x)) if self.output is not None else x


def cut(model: nn.Module, bounds: list[tuple[int, int]], stages: list[int], sequence_shards: int = 1) -> list[StagePart]:
    """Keep the blocks of `stages` (indices into `bounds`) in `model`, under their full-model
    names, and drop what other stages hold; return one StagePart per stage."""
    keep = {i for s in stages for i in range(*bounds[s])}
    model.layers = nn.ModuleDict({str(i): block for i, block in enumerate(model.layers) if i in keep})
    last = len(bounds) - 1
    if 0 not in stages:
        model.tok_embeddings = None
    if last not in stages:
        model.norm = model.output = None
    return [StagePart(model, [str(i) for i in range(*bounds[s])], s == 0, s == last, sequence_shards) for s in stages]


@dataclass
class Pipeline:
    """This rank's stages and the schedule that runs them, on the mesh's pipeline dimension."""

    schedule: object  # a torch.distributed.pipelining schedule
    parts: list[StagePart]
    stages: list[int]  # global stage indices of `parts`
    n_stages: int
    group: dist.ProcessGroup
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    param_order: list[str]  # the full model's parameter names in module order (optimizer checkpoints)

    @property
    def has_first(self) -> bool:
        return 0 in self.stages

    @property
    def has_last(self) -> bool:
        return self.n_stages - 1 in self.stages

    def _peer(self, stage: int) -> int:
        """Global rank that runs `stage` (looped: stage s on pipeline rank s mod p)."""
        return dist.get_global_rank(self.group, stage % self.group.size())

    def _broadcast_from_last(self, value: Optional[torch.Tensor], device: torch.device) -> torch.Tensor:
        value = value.detach().float() if value is not None else torch.zeros((), device=device)
        dist.broadcast(value, src=self._peer(self.n_stages - 1), group=self.group)
        return value

    def step(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Forward and backward of every micro-batch (gradients accumulate, scaled by 1/m: the
        mean over the batch); returns the mean loss, the same on every rank of the pipeline."""
        losses: list[torch.Tensor] = []
        args = (inputs,) if self.has_first else ()
        if self.has_last:
            self.schedule.step(*args, target=targets, losses=losses, return_outputs=False)
        else:
            self.schedule.step(*args, return_outputs=False)
        self._reshard()
        return self._broadcast_from_last(torch.stack(losses).mean() if losses else None, inputs.device)

    @torch.no_grad()
    def evaluate(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Forward only, the whole batch through the stages in order (hidden states sent point to
        point, in the parameters' dtype); the loss, the same on every rank of the pipeline."""
        x = inputs
        for part, stage in zip(self.parts, self.stages):
            wire = next(part.parameters()).dtype
            if stage > 0:
                b, t = inputs.shape  # this TP rank's slice of the sequence (StagePart)
                x = torch.empty((b, t // part.sequence_shards, part.root.shape.d_model), dtype=wire, device=inputs.device)
                dist.recv(x, src=self._peer(stage - 1), group=self.group)
            x = part(x)
            if stage < self.n_stages - 1:
                dist.send(x.to(wire).contiguous(), dst=self._peer(stage + 1), group=self.group)
        self._reshard()
        return self._broadcast_from_last(self.loss_fn(x, targets) if self.has_last else None, inputs.device)

    def _reshard(self) -> None:
        """fsdp_pp: register the sharded parameters again. A stage's root (embedding, final norm,
        output) stays gathered after its last pass, and the optimizer and checkpoints address
        the model by its sharded parameters (its modules are the stage module's, not the parts')."""
        from torch.distributed.fsdp import FSDPModule

        for part in self.parts:
            for module in part.modules():
                if isinstance(module, FSDPModule):
                    module.reshard()

    def merge_param_groups(self, state: dict, prefix: str = "model.") -> dict:
        """An optimizer state dict keyed by names, its param_groups listing every stage's
        parameters (in the full model's order), so the DCP checkpoint holds one param_groups
        entry that fits every layout (consolidated into the ids single/ddp read)."""
        names = [None] * self.group.size()
        dist.all_gather_object(names, [group["params"] for group in state["param_groups"]], group=self.group)
        order = {prefix + name: i for i, name in enumerate(self.param_order)}
        groups = [{**group, "params": sorted({n for rank in names for n in rank[i]}, key=order.__getitem__)}
                  for i, group in enumerate(state["param_groups"])]
        return {**state, "param_groups": groups}


def build_pipeline(make: Callable[[], nn.Module], cfg: Config, microbatches: int, device_mesh, device: torch.device,
                   n_params: int, loss_fn: Callable) -> tuple[nn.Module, Pipeline]:
    """The cut model (what the stage module holds and checkpoints) and this rank's pipeline."""
    from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe, ScheduleInterleaved1F1B

    p = cfg.parallelism
    pp_mesh = device_mesh["pipeline_parallel"]
    n_stages = pp_mesh.size() * p.pp_stages_per_rank
    bounds = stage_bounds(cfg.model.n_layers, n_stages, p.pp_split_points)
    stages = stages_of_rank(pp_mesh.get_local_rank(), pp_mesh.size(), p.pp_stages_per_rank)
    parts: list[StagePart] = []
    order: list[str] = []

    def parallelize_stages(model: nn.Module, pcfg, mesh) -> nn.Module:
        order.extend(name for name, _ in model.named_parameters())
        tp_mesh = mesh["tensor_parallel"]
        for part in cut(model, bounds, stages, tp_mesh.size()):
            if tp_mesh.size() > 1:
                apply_tensor_parallel(part, tp_mesh)
            apply_parallelism(part, pcfg)  # activation checkpointing and compile per block
            if pcfg.strategy in ("fsdp_pp", "fsdp_tp_pp"):  # over the data-parallel ranks ("shard": no replicas)
                apply_fsdp(part, mesh["shard"], pcfg)
            parts.append(part)
        return model

    model = build_model(make, p, device_mesh, device, n_params, cfg.trainer.seed, cfg.init_from, apply=parallelize_stages)
    group = pp_mesh.get_group()
    pipeline_stages = [PipelineStage(part, s, n_stages, device, group=group) for part, s in zip(parts, stages)]
    if p.pp_schedule == "interleaved_1f1b":
        schedule = ScheduleInterleaved1F1B(pipeline_stages, n_microbatches=microbatches, loss_fn=loss_fn)
    else:
        kind = ScheduleGPipe if p.pp_schedule == "gpipe" else Schedule1F1B
        schedule = kind(pipeline_stages[0], n_microbatches=microbatches, loss_fn=loss_fn)
    return model, Pipeline(schedule, parts, stages, n_stages, group, loss_fn, order)


def clip_grad_norm(parameters: list[nn.Parameter], max_norm: float, pipeline_group=None) -> torch.Tensor:
    """clip_grad_norm_ over the whole model: FSDP/TP shards reduce through DTensor; pipeline
    stages hold disjoint parameters, so their squared norms are summed over the pipeline group."""
    grads = [p.grad for p in parameters if p.grad is not None]
    norm = torch.nn.utils.get_total_norm(grads)
    if hasattr(norm, "full_tensor"):  # FSDP2/TP: a DTensor, already reduced over its mesh
        norm = norm.full_tensor()
    if pipeline_group is not None:
        norm = norm ** 2
        dist.all_reduce(norm, group=pipeline_group)
        norm = norm.sqrt()
    torch.nn.utils.clip_grads_with_norm_(parameters, max_norm, norm)
    return norm
