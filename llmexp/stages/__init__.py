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
from llmexp.stages.dpo import DPOModule, prepare_dpo
from llmexp.stages.posttrain import example_datamodule
from llmexp.stages.pretrain import PretrainModule
from llmexp.stages.reward import RewardModule, prepare_pairs
from llmexp.stages.rlhf import RLHFModule, prepare_rlhf
from llmexp.stages.sft import SFTModule, prepare_sft


@dataclass(frozen=True)
class Stage:
    module: type[StageModule]
    # cfg -> prepared data; the result has a `.tokenizer` (and, for text, `.val_unigram_entropy`)
    prepare: Callable[[Config], Any]
    datamodule: Callable[[Config, Plan, Any], L.LightningDataModule]


STAGES: dict[str, Stage] = {
    "pretrain": Stage(PretrainModule, prepare_data, token_datamodule),
    "sft": Stage(SFTModule, prepare_sft, example_datamodule),
    "reward": Stage(RewardModule, prepare_pairs, example_datamodule),
    "dpo": Stage(DPOModule, prepare_dpo, example_datamodule),
    "rlhf": Stage(RLHFModule, prepare_rlhf, example_datamodule),
}

__all__ = ["STAGES", "Stage", "StageModule", "PretrainModule", "SFTModule", "RewardModule", "DPOModule", "RLHFModule"]
