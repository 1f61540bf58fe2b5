"""Checkpoints across layouts: a run saved under one layout resumes under another and lands
where an uninterrupted single-process run is (same global batch, seed, constant schedule)."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from llmexp.parallel.checkpoint import is_distributed_checkpoint
from tests.conftest import REPO
from tests.parallel.conftest import train

pytestmark = pytest.mark.slow  # 2-process trainings, two per test: minutes on 2 cores


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    return train("single", tmp_path_factory.mktemp("straight") / "run", 6)


@pytest.mark.parametrize("first, then", [("fsdp", "single"), ("tp", "ddp"), ("single", "fsdp"), ("fsdp", "tp")])
def test_resume_under_another_layout_matches_an_uninterrupted_run(first, then, straight, tmp_path):
    run_dir = tmp_path / "run"
    train(first, run_dir, 3)
    last = run_dir / "checkpoints" / "last.ckpt"
    assert is_distributed_checkpoint(last) == (first in ("fsdp", "tp"))  # DCP folder vs one file
    resumed = train(then, run_dir, 6)  # the same run folder, more steps, another layout
    assert resumed["steps"] == 6
    assert resumed["val_loss"] == pytest.approx(straight["val_loss"], abs=1e-3)


def test_consolidate_turns_shards_into_the_file_single_runs_read(tmp_path):
    run_dir = tmp_path / "run"
    train("fsdp", run_dir, 3)
    out = tmp_path / "consolidated.ckpt"
    result = subprocess.run([sys.executable, "-m", "llmexp.parallel.checkpoint", str(run_dir), "--out", str(out)],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    checkpoint = torch.load(out, weights_only=True, map_location="cpu")
    assert checkpoint["global_step"] == 3 and checkpoint["llmexp"]["config"]["parallelism"]["strategy"] == "fsdp"
    state = checkpoint["state_dict"]
    assert state["model.layers.0.attention.wq.weight"].shape == (64, 64)  # full, not a shard
    assert isinstance(checkpoint["optimizer_states"][0]["param_groups"][0]["params"][0], int)
    # init_from reads the folder directly (consolidated on the fly).
    follow = train("single", tmp_path / "follow", 1, f"init_from={run_dir}")
    assert follow["initial_val_loss"] == pytest.approx(
        train("single", tmp_path / "same", 1, f"init_from={out}")["initial_val_loss"], abs=1e-6)
