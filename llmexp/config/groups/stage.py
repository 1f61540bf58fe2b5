"""stage group: what a run trains (or evaluates). Every stage extends StageConfig with its own
dataclass, registered in STAGE_SCHEMAS; its conf/stage/<name>.yaml starts from
`/schema/stage@_here_: <name>`. Rules here look at the stage alone; those that involve the
tokenizer, trainer or other runs are in ../rules.py."""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from typing import Any, List, Literal, Optional

from omegaconf import MISSING

from llmexp.config.checks import choice, in_range, positive, require

LoraTarget = Literal["wq", "wk", "wv", "wo", "w1", "w2", "w3"]
LORA_TARGETS: tuple[str, ...] = LoraTarget.__args__


@dataclass
class StageConfig:
    """Keys every stage has."""

    name: str = MISSING


@dataclass
class PretrainStageConfig(StageConfig):
    name: str = "pretrain"


@dataclass
class LoraConfig:
    """LoRA adapters (peft) on the named nn.Linear modules of every block; the base stays frozen."""

    enabled: bool = False
    rank: int = 8
    alpha: float = 16.0  # adapter output scaled by alpha / rank
    dropout: float = 0.0
    targets: List[str] = field(default_factory=lambda: ["wq", "wk", "wv", "wo"])  # each a LoraTarget
    quantize: Optional[str] = choice(Literal["nf4"], None)  # QLoRA: 4-bit frozen base; bitsandbytes on a GPU


@dataclass
class PostTrainStageConfig(StageConfig):
    """Keys every post-training stage shares: the dataset, its chat rendering, LoRA.
    The model and tokenizer come from init_from (required)."""

    dataset: str = MISSING  # a JSONL file, folder or glob; hf:<name>; or synthetic:<task> (llmexp/stages/tasks.py)
    hf_split: str = "train"  # for hf:<name>
    val_fraction: float = 0.1  # records held out for validation
    split_seed: int = 1234
    chat_template: str = choice(Literal["chatml", "plain"], "chatml")  # chatml uses reserved special tokens
    truncation: str = choice(Literal["error", "left", "right", "drop"], "error")  # a record longer than trainer.seq_len
    messages_field: str = "messages"  # [{role, content}, ...]; else prompt_field (+ response)
    prompt_field: str = "prompt"
    synthetic_records: int = 2000  # records generated for synthetic:<task>
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass
class SFTStageConfig(PostTrainStageConfig):
    name: str = "sft"
    response_field: str = "response"
    loss_on: str = choice(Literal["assistant", "all"], "assistant")
    packing: bool = True  # several records per sequence, attention kept within each


@dataclass
class RewardStageConfig(PostTrainStageConfig):
    name: str = "reward"
    chosen_field: str = "chosen"
    rejected_field: str = "rejected"


@dataclass
class DPOStageConfig(PostTrainStageConfig):
    name: str = "dpo"
    chosen_field: str = "chosen"
    rejected_field: str = "rejected"
    beta: float = 0.1
    loss: str = choice(Literal["sigmoid", "ipo"], "sigmoid")  # sigmoid: DPO
    # model: frozen copy of init_from | precomputed: log-probs in the records
    reference: str = choice(Literal["model", "precomputed"], "model")
    ref_chosen_field: str = "ref_chosen_logp"  # reference=precomputed
    ref_rejected_field: str = "ref_rejected_logp"


@dataclass
class RLHFStageConfig(PostTrainStageConfig):
    name: str = "rlhf"
    algorithm: str = choice(Literal["ppo", "grpo"], "ppo")
    reward: str = choice(Literal["callable", "model", "judge"], "callable")
    reward_fn: Optional[str] = None  # reward=callable: "package.module:function" (prompt, response) -> float
    reward_model: Optional[str] = None  # reward=model: a stage=reward run folder or checkpoint
    judge_model: Optional[str] = None  # reward=judge: a language-model run folder (RLAIF)
    judge_template: str = "{prompt}\n{response}\nIs this answer correct? Answer yes or no:"
    kl_coef: float = 0.05  # penalty on log pi/pi_ref (PPO: in the reward; GRPO: in the loss)
    group_size: int = 4  # samples per prompt (GRPO's group; PPO samples this many too)
    max_new_tokens: int = 32
    temperature: float = 1.0
    top_k: Optional[int] = None
    ppo_epochs: int = 2  # optimizer steps on each rollout batch
    clip: float = 0.2
    value_clip: float = 0.2
    vf_coef: float = 0.5
    gamma: float = 1.0
    gae_lambda: float = 0.95
    val_prompts: int = 32  # held-out prompts, group_size samples each, scored at each validation


@dataclass
class EvalStageConfig(StageConfig):
    """Evaluate `init_from` (llmexp checkpoint/run folder or transformers folder) on the eval
    group's tasks and intrinsic text (llmexp/eval/); nothing is trained."""

    name: str = "eval"


STAGE_SCHEMAS: dict[str, type] = {
    "pretrain": PretrainStageConfig, "sft": SFTStageConfig, "reward": RewardStageConfig,
    "dpo": DPOStageConfig, "rlhf": RLHFStageConfig, "eval": EvalStageConfig,
}
# Stages that start from a trained model: init_from is required, and its saved config decides
# the model (and tokenizer) so a user never repeats model=... for them.
POST_TRAINING = ("sft", "reward", "dpo", "rlhf")


def check_stage(s: Any) -> None:
    if s.name not in POST_TRAINING:
        return
    require(bool(s.dataset), "stage.dataset", s.dataset, "a JSONL file, folder or glob, hf:<name>, or synthetic:<task>")
    if not s.dataset.startswith(("hf:", "synthetic:")):
        pattern = os.path.expanduser(s.dataset)
        require(os.path.exists(pattern) or bool(glob.glob(pattern, recursive=True)), "stage.dataset", s.dataset,
                "no such file, folder or glob match (or use hf:<name>, synthetic:<task>)")
    in_range("stage.val_fraction", s.val_fraction, 0.0, 0.5, low_open=True, high_open=True)
    positive("stage.synthetic_records", s.synthetic_records)
    lora = s.lora
    if lora.enabled:
        positive("stage.lora.rank", lora.rank)
        positive("stage.lora.alpha", lora.alpha)
        in_range("stage.lora.dropout", lora.dropout, 0.0, 1.0, high_open=True)
        require(len(lora.targets) > 0 and set(lora.targets) <= set(LORA_TARGETS), "stage.lora.targets",
                lora.targets, "a non-empty list of " + ", ".join(LORA_TARGETS))
    if lora.quantize is not None:
        require(lora.enabled, "stage.lora.quantize", lora.quantize, "QLoRA needs stage.lora.enabled=true")
    if s.name == "dpo":
        positive("stage.beta", s.beta)
    if s.name == "rlhf":
        _check_rlhf(s)


def _check_rlhf(s: RLHFStageConfig) -> None:
    for key in ("group_size", "max_new_tokens", "temperature", "ppo_epochs", "clip", "val_prompts"):
        positive(f"stage.{key}", getattr(s, key))
    positive("stage.top_k", s.top_k, optional=True)
    require(s.kl_coef >= 0, "stage.kl_coef", s.kl_coef, "must be >= 0")
    in_range("stage.gamma", s.gamma, 0.0, 1.0, low_open=True)
    in_range("stage.gae_lambda", s.gae_lambda, 0.0, 1.0)
    if s.algorithm == "grpo":
        require(s.group_size >= 2, "stage.group_size", s.group_size, "GRPO compares samples within a group: >= 2")
    if s.reward == "callable":
        fn = s.reward_fn or ""
        require(":" in fn and all(fn.split(":", 1)), "stage.reward_fn", s.reward_fn,
                "reward=callable needs 'package.module:function' taking (prompt, response) -> float")
