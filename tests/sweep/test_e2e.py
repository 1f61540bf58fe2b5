"""Offline sweeps end to end: real `python -m llmexp` runs (a 2-layer model, 12 steps, W&B offline)
driven by `python -m llmexp.sweep` on W&B's engine. About 12 s per run on a 2-core CPU."""
from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import llmexp
from llmexp.sweep.state import SweepState

pytestmark = pytest.mark.timeout(600)

REPO = Path(__file__).resolve().parents[2]
TINY_RUN = [
    "logger=wandb", "model=tiny", "model.n_layers=2", "model.d_model=64", "model.n_heads=4", "model.n_kv_heads=2",
    "model.ffn_dim=128", "tokenizer.vocab_size=1024", "trainer.seq_len=64", "trainer.micro_batch_size=4",
    "trainer.global_batch_size=4", "trainer.max_steps=12", "trainer.max_tokens=null", "trainer.val_every=2",
    "trainer.val_batches=1", "trainer.log_every=2", "trainer.checkpoint_every=4", "optimizer.warmup_steps=1",
]


def tiny_sweep(sweep_file, method: str, parameters: dict, **extra) -> Path:
    return sweep_file({
        "name": f"e2e-{method}", "program": "llmexp", "method": method,
        "metric": {"name": "val/loss", "goal": "minimize"}, "parameters": parameters,
        "command": ["${env}", "${interpreter}", "-m", "${program}", *TINY_RUN, "${args_no_hyphens}"], **extra,
    }, name=f"e2e_{method}")


def sweep_cli(*args: str, timeout: float = 500) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llmexp.sweep", *args, "--poll", "0.5"], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def test_grid_sweep_offline_with_hyperband_stopping_a_planted_bad_run(sweep_file, tmp_path, read_wandb_run):
    # three good learning rates, worst first, then lr=1e-9, which leaves the loss where it starts
    lrs = [3.0e-3, 5.0e-3, 1.0e-2, 1.0e-9]
    path = tiny_sweep(sweep_file, "grid", {"optimizer.lr": {"values": lrs}},
                      early_terminate={"type": "hyperband", "min_iter": 2, "eta": 2})
    sweep_dir = tmp_path / "sweep"
    started = time.monotonic()
    done = sweep_cli(str(path), "--dir", str(sweep_dir))
    print(f"grid sweep of {len(lrs)} runs: {time.monotonic() - started:.0f} s")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    state = SweepState.load(sweep_dir / "state.json")
    assert [r.params["optimizer.lr"] for r in state.runs] == lrs
    bad, good = state.runs[-1], state.runs[:-1]
    assert bad.state == "killed" and bad.stopped and bad.stop_reason.endswith("STOP"), bad
    # It never reached its end: the driver's SIGTERM stopped it after a checkpoint (docs/run-contract.md).
    assert json.loads((Path(bad.run_dir) / "summary.json").read_text())["status"] == "preempted"
    finished = [r for r in good if r.state == "finished"]
    assert finished, [(r.id, r.state, r.stop_reason) for r in good]
    for r in finished:
        summary = json.loads((Path(r.run_dir) / "summary.json").read_text())
        assert summary["val_loss"] == pytest.approx(r.last("val/loss")) and summary["steps"] == 12
    best = min(finished, key=lambda r: r.last("val/loss"))
    assert best.last("val/loss") < bad.last("val/loss")

    command = (sweep_dir / "best.txt").read_text().splitlines()[-1]
    args = shlex.split(command)
    assert args[:3] == ["python", "-m", "llmexp"]
    assert llmexp.compose(args[3:]).optimizer.lr == best.params["optimizer.lr"]
    for name in ("summary.csv", "summary.md", "plot.png"):
        assert (sweep_dir / name).stat().st_size > 0
    assert "stopped" in (sweep_dir / "summary.md").read_text()

    # what W&B itself recorded for the best run (offline): the sweep's metric under its exact
    # name, and the resolved config as flat dotted keys holding the sweep's value
    recorded = read_wandb_run(Path(best.run_dir), best.id)
    assert recorded["run"] == {"id": best.id, "project": "llmexp", "group": f"e2e-grid-{state.sweep_id}"}
    config = recorded["config"]
    assert config["optimizer.lr"] == best.params["optimizer.lr"]
    assert config["trainer.max_steps"] == 12 and config["model.n_layers"] == 2
    logged = [row["val/loss"] for row in recorded["history"] if "val/loss" in row]
    assert logged and logged[-1] == pytest.approx(best.last("val/loss"))


@pytest.mark.slow
def test_bayes_sweep_offline(sweep_file, tmp_path):
    path = tiny_sweep(sweep_file, "bayes", {"optimizer.lr": {"distribution": "log_uniform_values",
                                                              "min": 1.0e-3, "max": 3.0e-2}})
    sweep_dir = tmp_path / "sweep"
    started = time.monotonic()
    done = sweep_cli(str(path), "--count", "4", "--dir", str(sweep_dir))
    print(f"bayes sweep of 4 runs: {time.monotonic() - started:.0f} s")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    state = SweepState.load(sweep_dir / "state.json")
    lrs = [r.params["optimizer.lr"] for r in state.runs]
    assert [r.state for r in state.runs] == ["finished"] * 4
    assert len(set(lrs)) == 4 and all(1.0e-3 <= lr <= 3.0e-2 for lr in lrs)
    assert "python -m llmexp" in (sweep_dir / "best.txt").read_text()


@pytest.mark.slow
def test_killed_driver_then_rerun_resumes_the_run_from_its_checkpoint(sweep_file, tmp_path):
    path = tiny_sweep(sweep_file, "grid", {"optimizer.lr": {"values": [1.0e-2, 3.0e-3]}})
    sweep_dir = tmp_path / "sweep"
    driver = subprocess.Popen([sys.executable, "-m", "llmexp.sweep", str(path), "--dir", str(sweep_dir), "--poll", "0.5"],
                              cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    checkpoint = None
    while time.monotonic() < deadline and driver.poll() is None:
        state = SweepState.load(sweep_dir / "state.json") if (sweep_dir / "state.json").is_file() else None
        if state and state.runs:
            checkpoint = Path(state.runs[0].run_dir) / "checkpoints" / "last.ckpt"
            if checkpoint.is_file():
                break
        time.sleep(0.5)
    assert checkpoint is not None and checkpoint.is_file(), "the first run never wrote a checkpoint"
    driver.send_signal(signal.SIGKILL)
    driver.wait()

    done = sweep_cli(str(path), "--dir", str(sweep_dir))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    state = SweepState.load(sweep_dir / "state.json")
    assert [r.state for r in state.runs] == ["finished", "finished"] and state.runs[0].attempts == 2
    log = (sweep_dir / "logs" / f"{state.runs[0].id}.log").read_text()
    assert "resuming from" in log
