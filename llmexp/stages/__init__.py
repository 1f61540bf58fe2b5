"""Training stages: each defines its loss and batch format; they share everything else."""
from __future__ import annotations

from llmexp.stages.pretrain import PretrainModule

STAGE_MODULES = {"pretrain": PretrainModule}

__all__ = ["STAGE_MODULES", "PretrainModule"]
