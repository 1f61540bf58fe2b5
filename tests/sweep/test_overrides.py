"""Parameter values as Hydra reads them: the agent's `key=value`, the checks, the program-side repair."""
from __future__ import annotations

import math

import numpy as np
import pytest

import llmexp
from llmexp.sweep.errors import SweepError
from llmexp.sweep.overrides import agent_argument, agent_overrides, hydra_value, misread, parse, to_override


@pytest.mark.parametrize(
    "value",
    [None, True, False, 0, -3, 3e-4, 1e-05, 1.0, 1e20, math.inf, -math.inf, "tiny", "bf16-mixed", "a,b",
     "it's", 'say "hi"', "a b", "null", "1e-4", "[x]", "", [1, 2], [0.9, 0.95], ["a,b", None, "c d"],
     [[1, 2], []], {"k": 1, "j": [True, None]}],
)
def test_hydra_value_reads_back_as_the_same_value(value):
    text = hydra_value(value)
    assert parse(f"key={text}") == value and type(parse(f"key={text}")) is type(value), text


def test_nan_and_numpy_scalars():
    assert math.isnan(parse(to_override("k", float("nan"))))
    assert to_override("optimizer.lr", np.float64(0.003)) == "optimizer.lr=0.003"
    assert to_override("trainer.global_batch_size", np.int64(32)) == "trainer.global_batch_size=32"


def test_agent_argument_is_wandbs_formatting():
    # wandb formats f"{param}={value}": str() of the value, whatever Hydra makes of it
    assert agent_argument("name", None) == "name=None"
    assert agent_argument("logger.tags", ["a", "b"]) == "logger.tags=['a', 'b']"
    assert agent_argument("optimizer.lr", np.float64(0.001)) == "optimizer.lr=0.001"


@pytest.mark.parametrize(
    "value, reason",
    [
        (None, "reads as 'None'"),
        ("a,b", "multirun sweep"),
        ([1, None], "reads as [1, 'None']"),
        ({"a": 1}, "not a Hydra override"),
    ],
)
def test_misread_values_are_named(value, reason):
    assert reason in misread("key", value)


@pytest.mark.parametrize("value", [3e-4, 16, True, "tiny", [0.9, 0.95], ["a", "b c"], "null", "'a,b'", "1e-4"])
def test_values_that_reach_hydra_intact(value):
    # strings are Hydra override text: "null" means null, "'a,b'" the string a,b, "1e-4" a float
    assert misread("key", value) is None


def test_parse_rejects_sweeps_and_bad_syntax():
    with pytest.raises(SweepError, match="multirun sweep"):
        parse("model=tiny,7b")
    with pytest.raises(SweepError, match="not a Hydra override"):
        parse("a=x=y")


def test_agent_overrides_outside_an_agent_is_identity(monkeypatch):
    monkeypatch.delenv("WANDB_SWEEP_PARAM_PATH", raising=False)
    argv = ["name=None", "optimizer.lr=0.1"]
    assert agent_overrides(argv) == argv


def test_agent_overrides_repairs_only_misread_parameters(tmp_path):
    from wandb.sdk.lib import config_util

    params = {"name": None, "logger.tags": ["a,b", "c"], "optimizer.grad_clip": None, "optimizer.lr": 0.002,
              "logger.group": "x,y", "model": "tiny", "optimizer.betas": [0.9, 0.99]}
    path = tmp_path / "config-run.yaml"
    config_util.save_config_file_from_dict(str(path), {k: {"value": v} for k, v in params.items()})
    argv = ["logger=wandb"] + [agent_argument(k, v) for k, v in params.items()] + ["trainer.max_steps=3"]
    repaired = agent_overrides(argv, {"WANDB_SWEEP_PARAM_PATH": str(path)})
    assert repaired == [
        "logger=wandb", "name=null", "logger.tags=['a,b', 'c']", "optimizer.grad_clip=null", "optimizer.lr=0.002",
        "logger.group='x,y'", "model=tiny", "optimizer.betas=[0.9, 0.99]", "trainer.max_steps=3",
    ]
    cfg = llmexp.compose(repaired)
    assert cfg.name is None and cfg.optimizer.grad_clip is None and cfg.logger.group == "x,y"
    assert cfg.logger.tags == ["a,b", "c"] and cfg.optimizer.betas == [0.9, 0.99] and cfg.optimizer.lr == 0.002
    with pytest.raises(llmexp.ConfigError):  # what the program would get without the repair
        llmexp.compose(argv)
