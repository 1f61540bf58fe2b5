"""Training stages. Each names its LightningModule (the loss), how its data is prepared and
which DataModule serves it; they share the model, optimizer, checkpoints and run folder."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import lightning as L

from llmexp.config.schema import Config
from llmexp.data.datamodule import token_datamodule
from llmexp.data.prepare import prepare_data
from llmexp.plan import Plan
from llmexp.stages.base import StageModule
from llmexp.stages.pretrain import PretrainModule


@dataclass(frozen=True)
class Stage:
    module: type[StageModule]
    # cfg -> prepared data; the result has a `.tokenizer` (and, for text, `.val_unigram_entropy`)
    prepare: Callable[[Config], Any]
    datamodule: Callable[[Config, Plan, Any], L.LightningDataModule]


STAGES: dict[str, Stage] = {
    "pretrain": Stage(PretrainModule, prepare_data, token_datamodule),
}

__all__ = ["STAGES", "Stage", "StageModule", "PretrainModule"]
