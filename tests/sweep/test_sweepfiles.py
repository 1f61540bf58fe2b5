"""Every sweep file under sweeps/ against W&B's sweep schema and llmexp's config schema, and the
errors a broken sweep file gets."""
from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llmexp.sweep.check import check_sweep
from llmexp.sweep.errors import SweepError
from llmexp.sweep.sweepfile import load_sweep

REPO = Path(__file__).resolve().parents[2]
SWEEP_FILES = sorted((REPO / "sweeps").glob("*.yaml"))


def test_the_shipped_sweeps_are_there():
    names = {p.name for p in SWEEP_FILES}
    assert {"lr_bayes.yaml", "batch_lr_grid.yaml", "warmup_wd_random.yaml", "lora_rank_sft.yaml"} <= names


@pytest.mark.parametrize("path", SWEEP_FILES, ids=[p.name for p in SWEEP_FILES])
def test_sweep_file_valid_for_wandb_and_llmexp(path, sft_base, fresh_folder):
    fresh_folder(path)
    sweep = load_sweep(path)  # W&B's schema (sweeps.schema_violations_from_proposed_config, SweepConfig)
    report = check_sweep(sweep)  # llmexp's: every parameter value composed, validated and planned
    assert report.combinations >= 1
    assert sweep.metric == "val/loss"
    if sweep.method == "bayes":
        assert sweep.early_terminate and sweep.early_terminate["type"] == "hyperband"


def test_isoflop_sweep_is_what_its_study_writes(fresh_folder):
    """sweeps/isoflop.yaml below its header is the study's own sweep.yaml, as its header says."""
    shipped = REPO / "sweeps" / "isoflop.yaml"
    folder = fresh_folder(shipped)
    assert yaml.safe_load((folder / "studies" / "cpu" / "sweep.yaml").read_text()) == yaml.safe_load(shipped.read_text())


def test_sft_sweep_needs_its_base_model(monkeypatch):
    monkeypatch.delenv("SFT_INIT_FROM", raising=False)
    with pytest.raises(SweepError, match="needs the environment variable SFT_INIT_FROM"):
        check_sweep(load_sweep(REPO / "sweeps" / "lora_rank_sft.yaml"))


GOOD = {
    "program": "llmexp", "method": "grid", "metric": {"name": "val/loss", "goal": "minimize"},
    "parameters": {"optimizer.lr": {"values": [1.0e-3, 3.0e-3]}},
    "command": ["${env}", "${interpreter}", "-m", "${program}", "logger=wandb", "model=tiny", "${args_no_hyphens}"],
}


def edited(**changes):
    config = copy.deepcopy(GOOD)
    for key, value in changes.items():
        if value is None:
            config.pop(key)
        else:
            config[key] = value
    return config


@pytest.mark.parametrize(
    "config, message",
    [
        (edited(method="hyperopt"), "not a valid W&B sweep"),
        (edited(parameters={"optimizer.lr": {"min": 0.1, "max": 0.01}}), "min 0.1 is not less than max 0.01"),
        (edited(parameters={"optimizer.lr": {"min": "1e-4", "max": 0.1}}), "YAML reads 1e-4 as a string"),
        (edited(command=None), "command: a block list is required"),
        (edited(command=["python", "-m", "llmexp", "${args}"]), "${args} does not give Hydra overrides"),
        (edited(metric=None), "metric: name the metric"),
        (edited(parameters={"optimizer": {"parameters": {"lr": {"values": [0.1]}}}}), "use flat dotted names"),
        (edited(metric={"name": "val_loss"}), "metric.name='val_loss': llmexp never logs it"),
        (edited(parameters={"optimizer.lrr": {"values": [0.1]}}), "optimizer.lrr='0.1': unknown key"),
        (edited(parameters={"trainer.global_batch_size": {"values": [16, 24]}}),
         "trainer.global_batch_size=24: must be a multiple of micro_batch_size"),
        (edited(parameters={"optimizer.warmup_steps": {"min": 0.0, "max": 10.0}}),
         "optimizer.warmup_steps=0.01: expected integer"),
        (edited(parameters={"name": {"values": [None, "x"]}}), "write the value as the string 'null'"),
        (edited(parameters={"logger.group": {"values": ["a,b"]}}), "Hydra multirun sweep"),
        (edited(parameters={"model": {"values": ["tiny"]}}), "parameters.model is also fixed in command"),
        (edited(command=GOOD["command"][:4] + ["${args_no_hyphens}"]), "runs log with logger=csv; add logger=wandb"),
        (edited(command=["${env}", "${interpreter}", "train.py", "${args_no_hyphens}"]), "does not run llmexp"),
        (edited(command=GOOD["command"][:4] + ["--cfg", "${args_no_hyphens}"]), "option '--cfg' does not belong"),
    ],
)
def test_broken_sweep_files_are_refused_with_the_reason(config, message, sweep_file):
    with pytest.raises(SweepError) as err:
        check_sweep(load_sweep(sweep_file(config)))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_flow_list_command_gets_a_hint(tmp_path):
    path = tmp_path / "flow.yaml"
    path.write_text("method: grid\nparameters: {a: {values: [1]}}\ncommand: [${env}, ${args_no_hyphens}]\n")
    with pytest.raises(SweepError, match="write command: as a block list"):
        load_sweep(path)


def test_random_sweep_checks_distribution_ends_and_every_combination(sweep_file):
    config = edited(method="random", parameters={
        "optimizer.warmup_steps": {"distribution": "int_uniform", "min": 0, "max": 50},
        "optimizer.weight_decay": {"distribution": "uniform", "min": 0.0, "max": 0.3},
        "trainer.global_batch_size": {"values": [16, 32, 64]},
    })
    report = check_sweep(load_sweep(sweep_file(config)))
    assert report.combinations == 2 * 2 * 3 and report.exhaustive


def test_cli_check(tmp_path):
    env_run = dict(capture_output=True, text=True, cwd=REPO, timeout=120)
    ok = subprocess.run([sys.executable, "-m", "llmexp.sweep", "sweeps/lr_bayes.yaml", "--check"], **env_run)
    assert ok.returncode == 0, ok.stderr
    assert "valid for W&B and llmexp" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text((REPO / "sweeps" / "lr_bayes.yaml").read_text().replace("name: val/loss", "name: loss"))
    refused = subprocess.run([sys.executable, "-m", "llmexp.sweep", str(bad), "--check"], **env_run)
    assert refused.returncode == 2
    assert refused.stderr.strip().count("\n") == 0 and "llmexp never logs it" in refused.stderr
