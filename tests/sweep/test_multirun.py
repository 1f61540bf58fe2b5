"""A grid sweep file as a Hydra multirun command, for Hydra's submitit launcher on SLURM."""
from __future__ import annotations

import itertools
import shlex
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from llmexp.sweep.errors import SweepError
from llmexp.sweep.multirun import grid_values, multirun_command
from llmexp.sweep.sweepfile import load_sweep

REPO = Path(__file__).resolve().parents[2]


def test_grid_file_becomes_a_multirun_over_the_same_grid():
    sweep = load_sweep(REPO / "sweeps" / "batch_lr_grid.yaml")
    args = shlex.split(multirun_command(sweep))
    assert args[:4] == ["python", "-m", "llmexp", "-m"] and args[-1] == "hydra/launcher=submitit_slurm"
    parser = OverridesParser.create()
    swept = {}
    for item in args[4:-1]:
        parsed = parser.parse_override(item)
        if parsed.is_sweep_override():
            swept[parsed.key_or_group] = parsed.value().list
    assert swept == grid_values(sweep) == {
        "trainer.global_batch_size": [16, 32, 64], "optimizer.lr": [1.0e-3, 3.0e-3, 1.0e-2]}
    assert len(list(itertools.product(*swept.values()))) == 9


def test_the_submitit_launcher_composes_with_a_grid_point():
    # the launcher group comes from hydra-submitit-launcher; compose one point of the grid with it
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from llmexp.config.compose import PRIMARY_CONFIG, conf_dir, register_schema

    register_schema()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            cfg = compose(PRIMARY_CONFIG, overrides=["optimizer.lr=0.001", "hydra/launcher=submitit_slurm"],
                          return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()
    assert "submitit" in cfg.hydra.launcher._target_ and cfg.optimizer.lr == 0.001


def test_only_grids_translate():
    with pytest.raises(SweepError, match="only a grid sweep"):
        multirun_command(load_sweep(REPO / "sweeps" / "lr_bayes.yaml"))
