"""Loggers and Hydra multirun: where a run's numbers go."""
from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import FAST_TRAINING, run_cli

SHORT = [*FAST_TRAINING, "trainer.max_steps=3", "trainer.val_every=3"]


@pytest.mark.parametrize("logger,marker", [("wandb", "wandb/latest-run"), ("tensorboard", "tensorboard")])
def test_trackers_write_beside_the_metrics_csv(tmp_path, logger, marker, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)  # offline: no key
    run_dir = tmp_path / "run"
    result = run_cli(*SHORT, f"logger={logger}", f"run_dir={run_dir}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (run_dir / marker).exists() and (run_dir / "metrics.csv").is_file()
    if logger == "wandb":
        assert "offline" in result.stdout + result.stderr


def test_multirun_runs_every_combination_in_its_own_folder(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli("-m", *SHORT, "optimizer.lr=1e-3,3e-3", f"hydra.sweep.dir={sweep}")
    assert result.returncode == 0, result.stderr[-2000:]
    lrs = sorted(yaml.safe_load((sweep / str(i) / "config.yaml").read_text())["optimizer"]["lr"] for i in (0, 1))
    assert lrs == [1e-3, 3e-3]
    assert all(json.loads((sweep / str(i) / "summary.json").read_text())["status"] == "finished" for i in (0, 1))


def test_cfg_prints_the_validated_config():
    result = run_cli("--cfg", "model=125m")
    assert result.returncode == 0 and "n_layers: 12" in result.stdout
