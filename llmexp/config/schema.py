"""Typed schema: every key llmexp understands, its type, its default and its allowed values.

The YAML under conf/ supplies values; these dataclasses decide what is a key at all. Each group's
dataclass sits with its own rules in llmexp/config/groups/<group>.py; this module composes
them into the root Config (and re-exports them, so `llmexp.config.schema` names every class).
`validate.py` merges the composed config onto Config, so an unknown key or a wrong type fails
there with the key's full name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from omegaconf import MISSING

from llmexp.config.groups.data import CleanConfig, DataConfig, SourceConfig
from llmexp.config.groups.eval import EvalConfig
from llmexp.config.groups.logger import LoggerConfig
from llmexp.config.groups.model import ModelConfig
from llmexp.config.groups.optimizer import OptimizerConfig
from llmexp.config.groups.parallelism import ParallelismConfig
from llmexp.config.groups.plan import PlanConfig
from llmexp.config.groups.stage import (
    POST_TRAINING, STAGE_SCHEMAS, DPOStageConfig, EvalStageConfig, LoraConfig, PostTrainStageConfig,
    PretrainStageConfig, RewardConfig, RewardStageConfig, RLHFStageConfig, SFTStageConfig, StageConfig,
)
from llmexp.config.groups.tokenizer import TokenizerConfig
from llmexp.config.groups.trainer import TrainerConfig


@dataclass
class PipelineStep:
    name: str = MISSING  # the step's name: its run folder is <pipeline run_dir>/<index>-<name>
    overrides: List[str] = field(default_factory=list)  # Hydra overrides for this step (stage=..., ...)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    parallelism: ParallelismConfig = field(default_factory=ParallelismConfig)
    stage: Any = MISSING  # a StageConfig subclass, chosen by the stage group (STAGE_SCHEMAS)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    plan: PlanConfig = field(default_factory=PlanConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    name: Optional[str] = None  # None: "<stage>-<model>"
    out_dir: str = "runs"  # runs go to <out_dir>/<name>-<config hash> unless run_dir is set
    run_dir: Optional[str] = None
    resume: Optional[str] = None  # a checkpoint or run folder; a run folder resumes by itself
    init_from: Optional[str] = None  # weights to start from: an llmexp checkpoint or run folder, or a transformers folder
    # experiment/ chains (llmexp/pipeline.py): each step's overrides, run in order, each step
    # starting from the previous step's run folder; empty: a single run.
    pipeline: List[PipelineStep] = field(default_factory=list)
    dry_run: Any = False  # false | true | json


__all__ = [
    "CleanConfig", "Config", "DataConfig", "DPOStageConfig", "EvalConfig", "EvalStageConfig", "LoggerConfig",
    "LoraConfig", "ModelConfig", "OptimizerConfig", "ParallelismConfig", "PipelineStep", "PlanConfig",
    "POST_TRAINING", "PostTrainStageConfig", "PretrainStageConfig", "RewardConfig", "RewardStageConfig", "RLHFStageConfig",
    "SFTStageConfig", "SourceConfig", "STAGE_SCHEMAS", "StageConfig", "TokenizerConfig", "TrainerConfig",
]
