"""`python -m llmexp.scaling` as a user runs it: answers on stdout, bad input as one line on
stderr with exit code 2, no traceback."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from llmexp.scaling import CHINCHILLA
from llmexp.scaling.cli import main
from tests.conftest import REPO
from tests.scaling.conftest import FAST_STUDY, isoflop_points


def scaling(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llmexp.scaling", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_default_plan_is_epochs_law_near_20_tokens_per_param():
    """Chinchilla's budget with the default law: 15-25 tokens/param (Chinchilla trained 70B on
    1.4T, 20), provenance and caveat printed; the paper's rounded constants warn."""
    r = scaling("plan", "--compute", "5.76e23", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["law"]["name"] == "epoch" and 15 <= d["tokens_per_param"] <= 25
    assert 15 <= d["shape"]["tokens"] / d["shape"]["params"] <= 25
    r = scaling("plan", "--compute", "5.76e23")
    assert "law: epoch (Besiroglu et al. 2024" in r.stdout and "caveat: fitted on Chinchilla's" in r.stdout
    assert "(18.4 tokens/param)" in r.stdout and "exact, attention included" in r.stdout and "h100-hours" in r.stdout
    r = scaling("plan", "--compute", "5.76e23", "--law", "chinchilla")
    assert r.returncode == 0, r.stderr
    assert "parameters N    3.219e+10" in r.stdout and "predicted loss  1.9307" in r.stdout
    assert "caveat: Besiroglu et al. 2024 showed" in r.stdout and "prefer --law epoch" in r.stdout


def test_plan_json_from_accelerator_hours():
    r = scaling("plan", "--gpu-hours", "1000", "--accelerator", "a100", "--mfu", "0.5", "--law", "epoch", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["compute"] == pytest.approx(1000 * 3600 * 312e12 * 0.5)
    assert d["shape"]["flops"] == pytest.approx(d["compute"]) and d["accelerator_hours"] == pytest.approx(1000)
    assert d["loss"] > d["law"]["E"]


@pytest.mark.parametrize("args, message", [
    (["plan"], "one of the arguments --compute --gpu-hours --params --tokens is required"),
    (["plan", "--compute", "lots"], "not a number: 'lots'"),
    (["plan", "--compute", "-3"], "must be a finite number > 0"),
    (["plan", "--compute", "1e20", "--params", "1e9"], "not allowed with argument"),
    (["plan", "--compute", "1e20", "--law", "kaplan"], "--law 'kaplan'"),
    (["plan", "--gpu-hours", "10", "--accelerator", "tpu"], "accelerator 'tpu'"),
    (["shape", "--params", "1e6", "--family", "rwkv"], "--family 'rwkv'"),
    (["isoflop", "--budgets", "1e12", "--out", "/tmp/x", "optimizer.lr=1"], "optimizer.lr is set per run"),
    (["fit"], "give a study folder or --points"),
    (["fit", "/nonexistent/study"], "not a study folder"),
    (["run", "/nonexistent/study"], "not a study folder"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, capsys):
    with pytest.raises(SystemExit) as exit:
        main(args)
    assert exit.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("llmexp.scaling: error:"), lines


def test_bad_input_from_the_shell_has_no_traceback():
    r = scaling("plan", "--tokens", "0")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_shape_writes_a_model_config_llmexp_trains(tmp_path):
    r = scaling("shape", "--params", "2e6", "--family", "tiny", "--out", str(tmp_path), "--name", "mine")
    assert r.returncode == 0, r.stderr
    model = yaml.safe_load(r.stdout)
    assert model["name"] == "mine" and model["d_model"] == 256 and model["n_heads"] == 8 and model["n_kv_heads"] == 4
    assert yaml.safe_load((tmp_path / "model" / "mine.yaml").read_text()) == model
    assert f"python -m llmexp --config-dir {tmp_path} model=mine" in r.stderr


def test_fit_and_report_from_a_csv(tmp_path):
    B, N, D, L = isoflop_points(CHINCHILLA, np.logspace(18, 21, 4), sizes=7, noise=0.003)
    rows = ["budget,params,tokens,loss"] + [f"{b},{n},{d},{l}" for b, n, d, l in zip(B, N, D, L)] + ["1e18,1e8,1e9,nan"]
    (tmp_path / "points.csv").write_text("\n".join(rows) + "\n")
    r = scaling("fit", "--points", str(tmp_path / "points.csv"), "--target", "1e23", "--bootstrap", "30")
    assert r.returncode == 0, r.stderr
    assert "left out row 30: non-finite" in r.stderr
    assert "approach 2: N_opt" in r.stdout and "approach 3: L = " in r.stdout and "at 1e+23 FLOPs (exact, parametric)" in r.stdout
    fit = json.loads((tmp_path / "fit.json").read_text())
    assert abs(fit["parametric"]["law"]["alpha"] - CHINCHILLA.alpha) < 0.05
    r = scaling("plan", "--compute", "1e23", "--law", str(tmp_path / "fit.json"))
    assert r.returncode == 0 and "law: fitted" in r.stdout
    r = scaling("report", "--points", str(tmp_path / "points.csv"), "--target", "1e23", "--bootstrap", "10")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "report.md").is_file() and (tmp_path / "plots" / "contours.png").is_file()
    for name in ("residuals.png", "extrapolation.png"):
        assert (tmp_path / "plots" / name).is_file()
    assert "## Held-out budget" in (tmp_path / "report.md").read_text()
    r = scaling("fit", "--points", str(tmp_path / "points.csv"), "--target", "1e23", "--bootstrap", "10",
                "--flops", "6ND", "--outliers", "residual", "--budget-tolerance", "0.05")
    assert r.returncode == 0, r.stderr
    assert "FLOPs: FLOPs as 6ND" in r.stdout and "at 1e+23 FLOPs (6ND, isoflop)" in r.stdout
    assert "held-out budget check (fit without the largest budget, 1e+21, 7 runs)" in r.stdout
    assert json.loads((tmp_path / "fit.json").read_text())["outliers"] == "residual"


def test_isoflop_emits_the_study(tmp_path):
    out = tmp_path / "study"
    r = scaling("isoflop", "--budgets", "2e11,6e11", "--sizes", "1.2e5,5e5,1.4e6", "--out", str(out), *FAST_STUDY)
    assert r.returncode == 0, r.stderr
    assert "c6e11-tiny-d256-l2" in r.stdout and "wandb sweep" in r.stdout
    for name in ("study.json", "sweep.yaml", "multirun.sh", "commands.txt", "conf/model/c2e11-tiny-d64-l1.yaml",
                 "conf/recipe/c2e11-tiny-d64-l1.yaml"):
        assert (out / name).is_file(), name
    r = scaling("isoflop", "--budgets", "2e11", "--out", str(out))
    assert r.returncode == 2 and "already holds a study" in r.stderr
