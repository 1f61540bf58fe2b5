"""Tensor-parallel plans as data: module-path patterns (fnmatch, `*` per path token) -> how
that module is split. Each model family declares its plan beside itself (llama.py, heads.py);
llmexp/parallel/tensor.py turns it into torch.distributed.tensor.parallel styles. Nothing
here imports torch.distributed: the networks stay plain PyTorch.

Activation placements, for (batch, seq, ...) tensors:
- "replicate": every TP rank holds the whole tensor;
- "sequence": split along the sequence (dim 1), as sequence parallelism keeps the residual stream;
- "heads": split along dim 2 of (batch, seq, heads, head_dim): this rank's heads.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Union

Placement = Literal["replicate", "sequence", "heads"]


@dataclass(frozen=True)
class Colwise:
    """A Linear split by output features (an Embedding: by its embedding dim). `output` None:
    each rank keeps its own columns (the next rowwise layer reads them)."""

    input: Placement = "replicate"
    output: Optional[Placement] = None


@dataclass(frozen=True)
class Rowwise:
    """A Linear split by input features (an Embedding: by vocabulary rows); the partial sums
    are reduced into `output` (reduce-scattered for "sequence", all-reduced for "replicate").
    `input` None: each rank's own columns from a colwise layer."""

    input: Optional[Placement] = None
    output: Placement = "replicate"


@dataclass(frozen=True)
class Sequence:
    """Weights replicated, the per-token computation run on this rank's slice of `over`
    (norms); their gradients are all-reduced. `local`: hand plain tensors on."""

    over: Placement = "sequence"
    local: bool = False


@dataclass(frozen=True)
class Gather:
    """A module's first positional input redistributed from `source` to `target` before it
    runs (the other positional inputs pass untouched; `arity` counts them all)."""

    source: Placement
    target: Placement
    arity: int = 1


Style = Union[Colwise, Rowwise, Sequence, Gather]
Plan = dict[str, Style]


def prefixed(plan: Plan, prefix: str) -> Plan:
    """The plan of a submodule, seen from its parent (a backbone under a head)."""
    return {f"{prefix}.{path}": style for path, style in plan.items()}
