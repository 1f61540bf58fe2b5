"""Rewards of RL post-training: weighted reward functions, each scored and logged on its own.

A reward is a Python callable ("package.module:function" called with the last user message
and the completion, and with `messages=` the whole conversation when it takes that
argument), a reward model (a stage=reward run: its scalar head at the last token) or an LLM
judge (a language model's log p(" yes") - log p(" no") after `judge_template`: RLAIF). The
total is the weighted sum (TRL's reward_funcs + reward_weights); the KL penalty is separate.
"""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any, Callable

import torch

from llmexp.config.errors import ConfigError


@dataclass(frozen=True)
class Reward:
    name: str  # logged as reward/<name>
    kind: str  # callable | model | judge
    source: str  # "module:function" or a run folder
    weight: float
    key: str  # the config key it came from, for error messages


def load_callable(spec: str, key: str) -> Callable[..., Any]:
    module, _, name = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ConfigError(key, spec, f"cannot import it: {err}") from None
    if not callable(fn):
        raise ConfigError(key, spec, "is not callable")
    return fn


def takes_messages(fn: Callable) -> bool:
    params = inspect.signature(fn).parameters
    return "messages" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def call_text_fn(fn: Callable, prompt: dict, completion: str) -> float:
    """fn(prompt, completion[, messages=conversation]) as a float."""
    if takes_messages(fn):
        return float(fn(prompt["prompt"], completion, messages=prompt["messages"]))
    return float(fn(prompt["prompt"], completion))


def rewards_of(stage) -> list[Reward]:
    """The stage's rewards: `stage.rewards` when given, else the single `stage.reward`."""
    if stage.rewards:
        out = []
        for i, r in enumerate(stage.rewards):
            default = r.source.rpartition(":")[2] if r.kind == "callable" and r.source else f"{r.kind}{i}"
            out.append(Reward(r.name or default, r.kind, r.source, r.weight, f"stage.rewards.{i}.source"))
        return out
    source = {"callable": stage.reward_fn, "model": stage.reward_model, "judge": stage.judge_model}[stage.reward]
    key = {"callable": "stage.reward_fn", "model": "stage.reward_model", "judge": "stage.judge_model"}[stage.reward]
    name = source.rpartition(":")[2] if stage.reward == "callable" else stage.reward
    return [Reward(name, stage.reward, source, 1.0, key)]


def weighted_total(per_function: dict[str, torch.Tensor], rewards: list[Reward]) -> torch.Tensor:
    return sum(r.weight * per_function[r.name].float() for r in rewards)


class AdaptiveKLController:
    """Ziegler et al. (2019) / TRL's former AdaptiveKLController: the KL coefficient moves so the
    measured KL (nats per sequence) tracks `target`: beta *= 1 + clip(KL/target - 1, +-0.2) *
    n/horizon after each rollout of n samples."""

    def __init__(self, init: float, target: float, horizon: int):
        self.value, self.target, self.horizon = init, target, horizon

    def update(self, kl: float, n: int) -> None:
        error = min(max(kl / self.target - 1, -0.2), 0.2)
        self.value *= 1 + error * n / self.horizon

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = float(state["value"])
