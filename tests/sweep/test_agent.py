"""Online: each sweep's command expanded by the real W&B agent code, then composed by llmexp.

`wandb.wandb_agent.Agent._command_run` is what runs when the W&B server hands an agent a run;
here it runs for real with only its process launcher (`AgentProcess`) replaced by a recorder.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

import llmexp
from llmexp.sweep.check import split_program_args
from llmexp.sweep.command import expand, program_args
from llmexp.sweep.compat import engine, plain
from llmexp.sweep.overrides import agent_overrides
from llmexp.sweep.sweepfile import load_sweep


def run_agent(config: dict, params: dict, monkeypatch, tmp_path: Path) -> tuple[list[str], dict]:
    """(argv, environment) the W&B agent starts a run with."""
    import wandb.wandb_agent as wandb_agent

    started = {}

    class Recorder:
        def __init__(self, env=None, command=None, **kwargs):
            started.update(command=command, env=env)

    monkeypatch.setattr(wandb_agent, "AgentProcess", Recorder)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SWEEP_ID", "sweep0")
    for name in ("WANDB_RUN_ID", "WANDB_SWEEP_PARAM_PATH"):  # the agent sets these: restore after
        monkeypatch.setenv(name, "unset")
    agent = wandb_agent.Agent(api=None, queue=None, sweep_id="sweep0")
    agent._sweep_command = config["command"]  # as the agent takes it from the sweep's config
    agent._command_run({
        "type": "run", "run_id": "run0", "program": config.get("program"),
        "args": {name: {"value": value} for name, value in params.items()},
    })
    return started["command"], started["env"]


def value_at(cfg, key: str):
    node = OmegaConf.structured(cfg)
    if key in ("model", "tokenizer", "data", "optimizer", "parallelism", "stage", "trainer", "logger", "plan"):
        return OmegaConf.select(node, f"{key}.name")  # a config group: its option's name
    return OmegaConf.select(node, key, throw_on_missing=True)


def as_read(cfg, value):
    """A parameter's value as the run's config reads it: interpolations (isoflop.yaml's
    ${model.name}, ${oc.env:LLMEXP_STUDY_DATA}) resolved against that config."""
    node = OmegaConf.create(OmegaConf.to_container(OmegaConf.structured(cfg)))
    node["_value"] = value
    return node["_value"]


SWEEP_FILES = sorted((Path(__file__).resolve().parents[2] / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("path", SWEEP_FILES, ids=[p.name for p in SWEEP_FILES])
def test_agent_command_composes(path, monkeypatch, tmp_path, sft_base, fresh_folder):
    fresh_folder(path)
    sweep = load_sweep(path)
    suggestion = engine().next_run(sweep.config, [], validate=True)  # W&B's engine picks the run
    params = {k: plain(v["value"]) for k, v in suggestion.config.items()}
    argv, env = run_agent(sweep.config, params, monkeypatch, tmp_path)

    assert argv == expand(sweep.command, params, sweep.program)  # what the offline driver runs
    assert argv[:4] == ["/usr/bin/env", "python", "-m", "llmexp"]
    assert Path(env["WANDB_SWEEP_PARAM_PATH"]).is_file()
    overrides, config_dirs = split_program_args(program_args(argv))
    cfg = llmexp.compose(agent_overrides(overrides, env), config_dirs=config_dirs)
    for key, value in params.items():
        assert value_at(cfg, key) == as_read(cfg, value), key
    assert cfg.logger.name == "wandb"


def test_agent_values_hydra_misreads_are_repaired_from_the_agents_parameter_file(monkeypatch, tmp_path):
    config = {
        "method": "grid", "program": "llmexp", "metric": {"name": "val/loss"},
        "parameters": {"name": {"value": None}, "logger.group": {"value": "lr,wd"},
                       "optimizer.grad_clip": {"value": None}, "optimizer.lr": {"value": 0.001}},
        "command": ["${env}", "${interpreter}", "-m", "${program}", "logger=wandb", "${args_no_hyphens}"],
    }
    params = {k: v["value"] for k, v in config["parameters"].items()}
    argv, env = run_agent(config, params, monkeypatch, tmp_path)
    assert "name=None" in argv and "logger.group=lr,wd" in argv  # the agent's own formatting
    with pytest.raises(llmexp.ConfigError):
        llmexp.compose(program_args(argv))
    cfg = llmexp.compose(agent_overrides(program_args(argv), env))
    assert cfg.name is None and cfg.logger.group == "lr,wd" and cfg.optimizer.grad_clip is None
    assert cfg.optimizer.lr == 0.001
