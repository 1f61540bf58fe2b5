"""Tensor parallelism: a model family's plan (data declared beside the model, see
llmexp/models/tp_plan.py) interpreted with torch.distributed.tensor.parallel. No module
attribute is rewritten: the model reshapes by -1 heads and runs on its shards as it is."""
from __future__ import annotations

from fnmatch import fnmatch

from torch import nn
from torch.distributed.tensor import Replicate, Shard
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    ParallelStyle,
    PrepareModuleInput,
    RowwiseParallel,
    SequenceParallel,
    parallelize_module,
)

from llmexp.models.tp_plan import Colwise, Gather, Placement, Rowwise, Sequence, Style

_PLACEMENTS = {"replicate": Replicate(), "sequence": Shard(1), "heads": Shard(2)}
_DIMS = {"sequence": 1, "heads": 2}


def _placement(name: Placement | None):
    return None if name is None else _PLACEMENTS[name]


def parallel_style(style: Style) -> ParallelStyle:
    """One entry of a plan as torch's ParallelStyle."""
    if isinstance(style, Colwise):
        return ColwiseParallel(input_layouts=_placement(style.input), output_layouts=_placement(style.output))
    if isinstance(style, Rowwise):
        return RowwiseParallel(input_layouts=_placement(style.input), output_layouts=_placement(style.output))
    if isinstance(style, Sequence):
        return SequenceParallel(sequence_dim=_DIMS[style.over], use_local_output=style.local)
    if isinstance(style, Gather):
        rest = (None,) * (style.arity - 1)
        return PrepareModuleInput(input_layouts=(_placement(style.source), *rest),
                                  desired_input_layouts=(_placement(style.target), *rest))
    raise TypeError(f"not a tensor-parallel style: {style!r}")


def apply_tensor_parallel(model: nn.Module, tp_mesh) -> None:
    """`model.tensor_parallel_plan()` applied over `tp_mesh`. Weights shared by several modules
    (tied embeddings) are tied again afterwards: each module was sharded on its own, and both
    tables are split over the vocabulary alike, so one DTensor serves both."""
    plan = model.tensor_parallel_plan()
    names = [name for name, _ in model.named_modules()]
    unmatched = [p for p in plan if not any(fnmatch(n, p) for n in names)]
    if unmatched:  # a plan that names no module would leave it whole, silently
        raise ValueError(f"tensor-parallel plan entries match no module of {type(model).__name__}: {unmatched}")
    tied = _shared_parameters(model)
    parallelize_module(model, tp_mesh, {path: parallel_style(style) for path, style in plan.items()})
    for first, *others in tied:
        shared = model.get_parameter(first)
        for name in others:
            owner, _, attr = name.rpartition(".")
            setattr(model.get_submodule(owner), attr, shared)


def _shared_parameters(model: nn.Module) -> list[list[str]]:
    """Names of parameters held by more than one module, grouped per parameter."""
    by_id: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        by_id.setdefault(id(p), []).append(name)
    return [names for names in by_id.values() if len(names) > 1]
