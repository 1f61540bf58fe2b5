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

from llmexp.config.checks import choice, in_range, one_of, positive, require

LoraTarget = Literal["wq", "wk", "wv", "wo", "w1", "w2", "w3"]
LORA_TARGETS: tuple[str, ...] = LoraTarget.__args__
CHAT_TEMPLATES = ("model", "chatml", "plain")  # or a .jinja file


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
    # model: the model's own Jinja template (a transformers tokenizer's), else chatml when the tokenizer
    # reserves its tokens, else plain | chatml | plain | a path to a .jinja file
    chat_template: str = "model"
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
    beta: float = 0.1  # TRL's beta: DPO/KTO temperature; IPO's tau; SimPO's beta (~2); ORPO's lambda
    # the preference loss, as TRL names it (llmexp/stages/losses.py); ipo is length-normalised as TRL's
    loss_type: str = choice(Literal["sigmoid", "hinge", "ipo", "robust", "simpo", "orpo", "kto"], "sigmoid")
    label_smoothing: float = 0.0  # sigmoid: cDPO's label-noise rate; robust: flip rate in [0, 0.5); simpo too
    reference_free: bool = False  # DPO-family losses against a uniform reference (log pi_ref = 0)
    simpo_gamma: float = 0.5  # loss_type=simpo: target reward margin gamma (TRL's CPOConfig.simpo_gamma)
    desirable_weight: float = 1.0  # loss_type=kto: weight of the chosen (desirable) rows
    undesirable_weight: float = 1.0  # loss_type=kto: weight of the rejected (undesirable) rows
    # model: frozen copy of init_from | precomputed: log-probs in the records
    reference: str = choice(Literal["model", "precomputed"], "model")
    eval_fn: Optional[str] = None  # gold metric "module:function" (prompt, response[, messages]) of greedy replies
    eval_max_new_tokens: int = 32  # eval_fn: reply length limit on the held-out prompts
    ref_chosen_field: str = "ref_chosen_logp"  # reference=precomputed
    ref_rejected_field: str = "ref_rejected_logp"


RewardKind = Literal["callable", "model", "judge"]


@dataclass
class RewardConfig:
    """One of several weighted rewards of stage=rlhf (logged apart as reward/<name>)."""

    kind: str = choice(RewardKind, "callable")
    source: Optional[str] = None  # callable: "package.module:function"; model/judge: a run folder or checkpoint
    weight: float = 1.0
    name: Optional[str] = None  # None: the function's name, or <kind><index>


@dataclass
class RLHFStageConfig(PostTrainStageConfig):
    name: str = "rlhf"
    algorithm: str = choice(Literal["ppo", "grpo", "rloo"], "ppo")
    # grpo's aggregation, TRL's names: grpo (per sequence) | dapo (TRL's default: global tokens) | dr_grpo | bnpo
    loss_type: str = choice(Literal["grpo", "dapo", "dr_grpo", "bnpo"], "grpo")
    # grpo: advantages / std of the group | of the batch | none (Dr. GRPO)
    scale_rewards: str = choice(Literal["group", "batch", "none"], "group")
    clip_high: Optional[float] = None  # TRL's epsilon_high (DAPO's clip-higher); None: = clip
    rewards: List[RewardConfig] = field(default_factory=list)  # several weighted rewards; empty: `reward` below
    reward: str = choice(RewardKind, "callable")  # a single reward, weight 1
    # reward=callable: "package.module:function" (prompt, response[, messages=conversation]) -> float
    reward_fn: Optional[str] = None
    reward_model: Optional[str] = None  # reward=model: a stage=reward run folder or checkpoint
    judge_model: Optional[str] = None  # reward=judge: a language-model run folder (RLAIF)
    judge_template: str = "{prompt}\n{response}\nIs this answer correct? Answer yes or no:"
    kl_coef: float = 0.05  # penalty on log pi/pi_ref (PPO, RLOO: in the reward; GRPO: in the loss); the start when adaptive
    kl_target: Optional[float] = None  # adaptive KL controller's target (nats per response); None: fixed kl_coef
    kl_horizon: int = 10000  # adaptive KL: samples over which the coefficient adapts
    kl_budget: Optional[float] = None  # held-out KL to the reference (nats/token) above which a warning is raised
    eval_fn: Optional[str] = None  # gold metric "module:function" (prompt, response[, messages]) -> float, held out
    win_rate: bool = True  # held out: fraction of prompts where the policy's sample beats the reference's
    group_size: int = 4  # samples per prompt (GRPO's group; PPO samples this many too)
    max_new_tokens: int = 32
    temperature: float = 1.0
    top_k: Optional[int] = None
    top_p: Optional[float] = None  # nucleus sampling of rollouts and held-out samples; None: off
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
SYNTHETIC_TASKS = ("sort",)  # stage.dataset=synthetic:<task>: the generators of llmexp/stages/tasks.py


def check_stage(s: Any) -> None:
    if s.name not in POST_TRAINING:
        return
    require(bool(s.dataset), "stage.dataset", s.dataset, "a JSONL file, folder or glob, hf:<name>, or synthetic:<task>")
    if s.dataset.startswith("synthetic:"):
        one_of("stage.dataset", s.dataset, [f"synthetic:{task}" for task in SYNTHETIC_TASKS])
    elif not s.dataset.startswith("hf:"):
        pattern = os.path.expanduser(s.dataset)
        require(os.path.exists(pattern) or bool(glob.glob(pattern, recursive=True)), "stage.dataset", s.dataset,
                "no such file, folder or glob match (or use hf:<name>, synthetic:<task>)")
    in_range("stage.val_fraction", s.val_fraction, 0.0, 0.5, low_open=True, high_open=True)
    require(s.chat_template in CHAT_TEMPLATES or (s.chat_template.endswith(".jinja") and os.path.isfile(
        os.path.expanduser(s.chat_template))), "stage.chat_template", s.chat_template,
        "model (the model's own Jinja template, else chatml/plain), chatml, plain, or an existing .jinja file")
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
        in_range("stage.label_smoothing", s.label_smoothing, 0.0, 0.5, high_open=True)
        require(s.desirable_weight > 0 and s.undesirable_weight > 0, "stage.desirable_weight",
                (s.desirable_weight, s.undesirable_weight), "KTO's weights (and undesirable_weight) must be > 0")
        positive("stage.eval_max_new_tokens", s.eval_max_new_tokens)
    if s.name in ("dpo", "rlhf") and s.eval_fn is not None:
        require(":" in s.eval_fn and all(s.eval_fn.split(":", 1)), "stage.eval_fn", s.eval_fn,
                "a gold metric 'package.module:function' taking (prompt, response) -> float")
    if s.name == "rlhf":
        _check_rlhf(s)


def _check_rlhf(s: RLHFStageConfig) -> None:
    for key in ("group_size", "max_new_tokens", "temperature", "ppo_epochs", "clip", "val_prompts", "kl_horizon"):
        positive(f"stage.{key}", getattr(s, key))
    for key in ("top_k", "clip_high", "kl_target", "kl_budget"):
        positive(f"stage.{key}", getattr(s, key), optional=True)
    require(s.top_p is None or 0.0 < s.top_p <= 1.0, "stage.top_p", s.top_p, "must be in (0, 1] or null")
    require(s.kl_coef >= 0, "stage.kl_coef", s.kl_coef, "must be >= 0")
    in_range("stage.gamma", s.gamma, 0.0, 1.0, low_open=True)
    in_range("stage.gae_lambda", s.gae_lambda, 0.0, 1.0)
    if s.algorithm in ("grpo", "rloo"):
        require(s.group_size >= 2, "stage.group_size", s.group_size,
                f"{s.algorithm.upper()} compares samples within a group: >= 2")
    for i, r in enumerate(s.rewards):
        if r.kind == "callable":
            _check_callable(f"stage.rewards.{i}.source", r.source)
    if not s.rewards and s.reward == "callable":
        _check_callable("stage.reward_fn", s.reward_fn)


def _check_callable(key: str, fn: Optional[str]) -> None:
    require(":" in (fn or "") and all((fn or "").split(":", 1)), key, fn,
            "reward=callable needs 'package.module:function' taking (prompt, response) -> float")


def reward_sources(s: RLHFStageConfig) -> list[tuple[str, str, Optional[str]]]:
    """(kind, config key, run folder) of every reward scored by another model (model, judge)."""
    if s.rewards:
        return [(r.kind, f"stage.rewards.{i}.source", r.source) for i, r in enumerate(s.rewards) if r.kind != "callable"]
    if s.reward == "callable":
        return []
    key = "reward_model" if s.reward == "model" else "judge_model"
    return [(s.reward, f"stage.{key}", getattr(s, key))]
