"""A real IsoFLOP study through `python -m llmexp`: designed, run (resumably), fitted and
reported. The default suite runs a very small one; `-m slow` runs the documented CPU study."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import psutil
import pytest

from tests.conftest import REPO
from tests.scaling.conftest import FAST_STUDY
from tests.scaling.test_scaling_cli import scaling


def test_tiny_study_end_to_end(tmp_path):
    out = tmp_path / "study"
    r = scaling("isoflop", "--budgets", "1e10,3e10", "--sizes", "1.2e5,5e5,1.4e6", "--batch-tokens", "512",
                "--out", str(out), *FAST_STUDY)
    assert r.returncode == 0, r.stderr
    _interrupt(out)
    r = scaling("run", str(out), "--jobs", "2", timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"\d runs finished, \d already done, 0 failed", r.stdout)
    for run in json.loads((out / "study.json").read_text())["runs"]:
        summary = json.loads((out / "runs" / run["id"] / "summary.json").read_text())
        assert summary["tokens"] == run["tokens"] and summary["params_total"] == run["params"]
        assert summary["total_flops"] == pytest.approx(run["budget"], rel=0.5)
    again = scaling("run", str(out))
    assert again.returncode == 0 and "0 runs finished, 6 already done" in again.stdout  # resumable
    r = scaling("report", str(out), "--target", "1e12", "--bootstrap", "20")
    assert r.returncode == 0, r.stderr
    fit = json.loads((out / "fit.json").read_text())
    # Whatever a few dozen steps give, each approach is either fitted or says why not.
    for key in ("isoflop", "parametric"):
        assert "law" in fit[key] or fit[key]["reason"]
    assert len(fit["runs"]["used"]) + len(fit["runs"]["excluded"]) == 6
    text = (out / "report.md").read_text()
    assert "## Runs" in text and (out / "plots" / "isoflop.png").is_file()
    # docs/scaling.md's refits of a study folder and the planner on its fit
    for flags in ([], ["--flops", "6ND", "--outliers", "residual"],
                  ["--flops", "6ND", "--outliers", "residual", "--budget-tolerance", "0.05"]):
        r = scaling("fit", str(out), "--target", "1e12", "--bootstrap", "10", *flags)
        assert r.returncode == 0 and "at 1e+12 FLOPs" in r.stdout, r.stdout + r.stderr
    # two budgets and six runs: the fit warns, so the planner refuses it in one line (exit 2) ...
    r = scaling("plan", "--compute", "1e12", "--law", str(out))
    assert r.returncode == 2 and "the fit carries" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    # ... unless told to plan with it anyway
    r = scaling("plan", "--compute", "1e12", "--law", str(out), "--allow-warnings")
    assert r.returncode == 0 and "law: fitted" in r.stdout, r.stdout + r.stderr


def _interrupt(out):
    """`kill` stops `run` and the runs it started (the next `run` goes on where they stopped)."""
    proc = subprocess.Popen([sys.executable, "-m", "llmexp.scaling", "run", str(out), "--jobs", "2"], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 120
    children = []
    while len(children) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
        children = psutil.Process(proc.pid).children()
    assert children, "no run started"
    proc.terminate()
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 130 and "interrupted; rerun" in err
    assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)


@pytest.mark.slow
def test_documented_cpu_study(tmp_path):
    """scripts/run_scaling_study.sh, as docs/scaling.md runs it (about half an hour)."""
    out = tmp_path / "cpu"
    r = subprocess.run(["bash", str(REPO / "scripts" / "run_scaling_study.sh"), str(out)], capture_output=True, text=True,
                       cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), "PYTHON": sys.executable}, timeout=3 * 3600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    fit = json.loads((out / "fit.json").read_text())
    assert len(fit["runs"]["used"]) == 12 and not fit["runs"]["excluded"]
    assert "law" in fit["parametric"] and ("law" in fit["isoflop"] or fit["isoflop"]["reason"])
    assert (out / "report.md").is_file() and (out / "plots" / "isoflop.png").is_file()
