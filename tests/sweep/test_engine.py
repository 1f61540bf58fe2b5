"""The offline driver's loop on W&B's engine, with a stand-in program (conftest.FAKE_PROGRAM) that
logs val/loss = (x-1)^2 + 1 + 2/(step+1): grid, random and Bayesian suggestions, failures,
Hyperband stops, reports, and continuing after the driver was killed."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmexp.sweep.driver import exclusive, run_sweep
from llmexp.sweep.engine import Engine
from llmexp.sweep.errors import SweepError
from llmexp.sweep.state import SweepState
from llmexp.sweep.sweepfile import load_sweep

pytestmark = pytest.mark.timeout(300)


def run(path: Path, tmp_path: Path, count=None, **kwargs):
    return run_sweep(path, count=count, sweep_dir=tmp_path / "sweep", check=False, poll_s=0.1, log=lambda _: None, **kwargs)


def test_grid_runs_every_combination_and_writes_the_reports(fake_sweep, tmp_path):
    path = fake_sweep("grid", {"x": {"values": [0.0, 1.0, 2.5]}, "steps": {"values": [3, 4]}})
    sweep, state, sweep_dir = run(path, tmp_path)
    assert [r.state for r in state.runs] == ["finished"] * 6
    assert sorted((r.params["x"], r.params["steps"]) for r in state.runs) == sorted(
        (x, s) for x in (0.0, 1.0, 2.5) for s in (3, 4))
    best = min(state.runs, key=lambda r: r.last("val/loss"))
    assert best.params == {"x": 1.0, "steps": 4}
    assert best.last("val/loss") == pytest.approx(1.0 + 2.0 / 4)  # the last logged value, as W&B's summary

    with (sweep_dir / "summary.csv").open() as f:
        table = list(csv.DictReader(f))
    assert len(table) == 6 and table[0]["run"] == best.id and table[0]["state"] == "finished"
    assert float(table[0]["val/loss"]) == pytest.approx(1.5)
    assert "| run | state | val/loss | x | steps |" in (sweep_dir / "summary.md").read_text()
    assert (sweep_dir / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    command = (sweep_dir / "best.txt").read_text().splitlines()[-1]
    assert command == "python -m llmexp x=1.0 steps=4"
    # each run saw what a W&B agent gives it: its id, the sweep's, the parameter file
    invoked = json.loads((Path(best.run_dir) / "invocations").read_text())
    assert invoked == {"x": 1.0, "steps": 4}


def test_failed_run_is_recorded_and_the_sweep_goes_on(fake_sweep, tmp_path):
    path = fake_sweep("grid", {"fail": {"values": [False, True]}, "x": {"values": [1.0, 2.0]}})
    _, state, sweep_dir = run(path, tmp_path)
    assert len(state.runs) == 4
    for record in state.runs:
        if record.params["fail"]:
            assert record.state == "failed" and record.exit_code == 3
            assert "exit code 3" in record.error and "planted failure" in record.error
        else:
            assert record.state == "finished"
    assert "x=1.0" in (sweep_dir / "best.txt").read_text()


def test_hyperband_stops_a_planted_bad_run(fake_sweep, tmp_path):
    # good runs first so the bad one meets bands other runs have reached
    path = fake_sweep(
        "grid", {"x": {"values": [1.2, 0.9, 1.0, 4.0]}, "steps": {"value": 12}, "delay": {"value": 0.15}},
        early_terminate={"type": "hyperband", "min_iter": 1, "eta": 2},
    )
    _, state, _ = run(path, tmp_path)
    bad = state.runs[-1]
    assert bad.params["x"] == 4.0
    assert bad.state == "killed" and bad.stopped, bad
    assert bad.stop_reason.startswith(f"hyperband: Run: {bad.id} ") and bad.stop_reason.endswith("STOP")
    assert len(bad.history) < 12  # stopped before its last step
    assert all(not r.stopped for r in state.runs if r.params["x"] == 1.0)


@pytest.mark.parametrize("method", ["bayes", "random"])
def test_bayes_and_random_suggest_inside_the_space(method, fake_sweep, tmp_path):
    path = fake_sweep(method, {"x": {"min": 0.0, "max": 3.0}, "steps": {"values": [2, 3]}})
    _, state, sweep_dir = run(path, tmp_path, count=5)
    assert [r.state for r in state.runs] == ["finished"] * 5
    xs = [r.params["x"] for r in state.runs]
    assert all(0.0 <= x <= 3.0 for x in xs) and len(set(xs)) == 5
    assert (sweep_dir / "best.txt").read_text().count("python -m llmexp x=") == 1


def test_suggestions_repeat_with_the_same_seed(fake_sweep, tmp_path):
    path = fake_sweep("random", {"x": {"min": 0.0, "max": 3.0}})
    first = [r.params for r in run_sweep(path, 3, tmp_path / "a", check=False, poll_s=0.1, log=lambda _: None)[1].runs]
    again = [r.params for r in run_sweep(path, 3, tmp_path / "b", check=False, poll_s=0.1, log=lambda _: None)[1].runs]
    other = [r.params for r in run_sweep(path, 3, tmp_path / "c", seed=1, check=False, poll_s=0.1, log=lambda _: None)[1].runs]
    assert first == again and first != other


def test_count_is_required_for_sweeps_that_never_end(fake_sweep, tmp_path):
    with pytest.raises(SweepError, match="give --count N"):
        run(fake_sweep("random", {"x": {"min": 0.0, "max": 1.0}}), tmp_path)


def test_an_invalid_run_fails_before_it_starts(fake_sweep, tmp_path):
    sweep = load_sweep(fake_sweep("grid", {"x": {"values": [1.0, 9.0]}}))
    sweep_dir = tmp_path / "sweep"
    state = SweepState.new(sweep.path, sweep.config, seed=0)

    def precheck(params):
        if params["x"] > 5:
            raise SweepError("x=9.0: must be <= 5")

    Engine(sweep, sweep_dir, state, precheck=precheck, poll_s=0.1, log=lambda _: None).run(None)
    assert [r.state for r in state.runs] == ["finished", "failed"]
    assert state.runs[1].error == "x=9.0: must be <= 5" and not Path(state.runs[1].run_dir).exists()
    assert json.loads((sweep_dir / "state.json").read_text())["runs"][1]["state"] == "failed"


def test_a_run_gets_what_a_wandb_agent_gives_it_and_never_the_drivers_wandb_service(fake_sweep, tmp_path):
    # A W&B service token inherited from whoever started the driver (a notebook, a test process
    # that logged to W&B) would make the run log through that service, which writes the run's
    # files after the run has exited; W&B's own agent drops it too.
    sweep = load_sweep(fake_sweep("grid", {"x": {"values": [1.0]}}))
    state = SweepState.new(sweep.path, sweep.config, seed=0)
    environ = {"PATH": os.environ["PATH"], "WANDB_SERVICE": "3-123-unix-/tmp/wandb-123/socket"}
    engine = Engine(sweep, tmp_path / "sweep", state, log=lambda _: None, environ=environ)
    record = state.add_run({"x": 1.0}, tmp_path / "sweep")
    env = engine.env(record)
    assert "WANDB_SERVICE" not in env
    assert env["WANDB_RUN_ID"] == record.id and env["WANDB_MODE"] == "offline"
    assert env["WANDB_RUN_GROUP"] == f"fake-{state.sweep_id}" and Path(env["WANDB_SWEEP_PARAM_PATH"]).is_file()


def test_one_driver_per_sweep_folder_and_the_file_must_not_change(fake_sweep, tmp_path):
    path = fake_sweep("grid", {"x": {"values": [1.0]}})
    with exclusive(tmp_path / "sweep"):
        with pytest.raises(SweepError, match="another driver is running this sweep"):
            run(path, tmp_path)
    run(path, tmp_path)
    path.write_text(path.read_text().replace("1.0", "2.0"))
    with pytest.raises(SweepError, match="different version"):
        run(path, tmp_path)


DRIVER = """
import sys
from llmexp.sweep.driver import run_sweep
run_sweep(sys.argv[1], count=3, sweep_dir=sys.argv[2], check=False, poll_s=0.1)
"""


def test_rerun_after_the_driver_was_killed_continues_the_sweep(fake_sweep, tmp_path):
    path = fake_sweep("grid", {"x": {"values": [0.5, 1.0, 1.5]}, "steps": {"value": 8}, "delay": {"value": 0.4}})
    sweep_dir = tmp_path / "sweep"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(path), str(sweep_dir)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state_path = sweep_dir / "state.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until the second run is under way
        state = SweepState.load(state_path) if state_path.is_file() else None
        if state and len(state.runs) == 2 and len(state.runs[1].history) >= 2:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the driver never got to its second run")
    child = state.runs[1].pid
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    time.sleep(1.0)
    assert not Path(f"/proc/{child}").exists() or b"fake_program" not in Path(f"/proc/{child}/cmdline").read_bytes()

    _, state, _ = run(path, tmp_path, count=3)
    assert [r.state for r in state.runs] == ["finished"] * 3 and len(state.runs) == 3
    interrupted = state.runs[1]
    assert interrupted.attempts == 2
    assert len((Path(interrupted.run_dir) / "invocations").read_text().splitlines()) == 2
    assert [row["_step"] for row in interrupted.history] == list(range(8))  # continued, not restarted twice
    assert state.runs[0].attempts == 1


def test_a_diverged_run_is_failed_and_never_picked_as_best(fake_sweep, tmp_path):
    path = fake_sweep("grid", {"x": {"values": [1.0, 2.0]}, "nan": {"values": [True, False]}, "delay": {"value": 0.0}})
    sweep, state, sweep_dir = run(path, tmp_path)
    states = {(r.params["x"], r.params["nan"]): r.state for r in state.runs}
    assert states == {(1.0, True): "failed", (2.0, True): "failed", (1.0, False): "finished", (2.0, False): "finished"}
    assert "exit code 3" in next(r.error for r in state.runs if r.params["nan"])
    best = (sweep_dir / "best.txt").read_text()
    assert "x=1.0" in best and "nan=false" in best.lower() and "nan=true" not in best.lower()
