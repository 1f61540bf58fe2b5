"""The program side of a sweep: `python -m llmexp` started as a W&B agent starts it, with values
Hydra misreads in its arguments and the agent's parameter file in its environment."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llmexp.sweep.overrides import agent_argument

REPO = Path(__file__).resolve().parents[2]


def test_every_rank_composes_the_values_the_sweep_meant(tmp_path):
    from wandb.sdk.lib import config_util

    params = {"optimizer.grad_clip": None, "logger.group": "lr,wd", "optimizer.lr": 0.002}
    path = tmp_path / "config-run0.yaml"
    config_util.save_config_file_from_dict(str(path), {k: {"value": v} for k, v in params.items()})
    argv = ["logger=wandb", *(agent_argument(k, v) for k, v in params.items()), "--cfg"]
    outputs = []
    for rank in ("0", "1"):  # Lightning starts rank 1 with the same argv and a copy of the environment
        env = {**os.environ, "WANDB_SWEEP_PARAM_PATH": str(path), "LOCAL_RANK": rank, "PYTHONPATH": str(REPO)}
        done = subprocess.run([sys.executable, "-m", "llmexp", *argv], capture_output=True, text=True,
                              cwd=REPO, env=env, timeout=120)
        if done.returncode == 2 and ("'None'" in done.stderr or "Ambiguous value" in done.stderr):
            pytest.xfail("llmexp.cli does not apply llmexp.sweep.agent_overrides to its arguments yet "
                         f"(docs/sweeps.md): {done.stderr.strip()}")
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1]
    cfg = yaml.safe_load(outputs[0])
    assert cfg["optimizer"]["grad_clip"] is None and cfg["logger"]["group"] == "lr,wd"
    assert cfg["optimizer"]["lr"] == 0.002
