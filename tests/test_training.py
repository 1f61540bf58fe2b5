"""Real trainings on the CPU: learning happens, the run folder is complete, and a run killed
with SIGKILL resumes to exactly where an uninterrupted run is at the same step."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from llmexp.callbacks import read_metrics
from tests.conftest import FAST_TRAINING, REPO, run_cli


def test_training_beats_the_unigram_baseline_and_leaves_a_complete_run_folder(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(*FAST_TRAINING, "trainer.max_steps=150", "trainer.val_every=50", f"run_dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    # Learning: far below the untrained loss (~ln 1024 = 6.9) and below the best context-free model.
    assert summary["val_loss"] < summary["initial_val_loss"] - 1.5
    assert summary["val_loss"] < summary["val_unigram_entropy"]
    assert summary["steps"] == 150
    for name in ("config.yaml", "command.txt", "meta.json", "plan.json", "metrics.csv", "loss.png",
                 "checkpoints/last.ckpt", "checkpoints/best.ckpt", "tokenizer/tokenizer.json"):
        assert (run_dir / name).is_file(), name
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["data_fingerprint"] and meta["llmexp_version"] and "git_commit" in meta
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["model"]["d_model"] == 128
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert checkpoint["llmexp"]["config"]["model"]["n_layers"] == 2  # checkpoints carry the config
    assert checkpoint["llmexp"]["data_fingerprint"] == meta["data_fingerprint"]
    assert "validation loss" in result.stdout and str(run_dir / "loss.png") in result.stdout
    assert "plan: stage=pretrain" in result.stdout  # every run logs its plan


RESUME = [*FAST_TRAINING, "trainer.max_steps=60", "trainer.checkpoint_every=10", "trainer.val_every=20",
          "trainer.log_every=1"]


def _checkpoint_step(path) -> int:
    try:
        return torch.load(path, weights_only=True, map_location="cpu")["global_step"]
    except (FileNotFoundError, RuntimeError, EOFError):
        return -1


def test_run_killed_with_sigkill_resumes_to_the_uninterrupted_result(tmp_path):
    straight = tmp_path / "straight"
    assert run_cli(*RESUME, f"run_dir={straight}").returncode == 0

    killed = tmp_path / "killed"
    args = [sys.executable, "-m", "llmexp", *RESUME, f"run_dir={killed}"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while _checkpoint_step(killed / "checkpoints" / "last.ckpt") < 30 and proc.poll() is None:
        assert time.time() < deadline
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)  # no chance to clean up or save
    proc.wait()
    assert not (killed / "summary.json").exists()
    stopped_at = _checkpoint_step(killed / "checkpoints" / "last.ckpt")
    assert 30 <= stopped_at < 60

    resumed = run_cli(*RESUME, f"run_dir={killed}")  # the same command again
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout

    a = json.loads((straight / "summary.json").read_text())
    b = json.loads((killed / "summary.json").read_text())
    assert b["steps"] == a["steps"] == 60
    assert b["val_loss"] == pytest.approx(a["val_loss"], abs=1e-4)
    train_a = dict(read_metrics(straight / "metrics.csv")["train/loss"])
    train_b = dict(read_metrics(killed / "metrics.csv")["train/loss"])
    after = [s for s in train_a if s > stopped_at]
    assert after and all(train_b[s] == pytest.approx(train_a[s], abs=1e-4) for s in after)
    assert set(train_b) == set(train_a)  # the rows from before the kill are still there
    assert b["initial_val_loss"] == pytest.approx(a["initial_val_loss"], abs=1e-6)


def test_resume_refuses_a_run_folder_of_another_experiment(tmp_path):
    run_dir = tmp_path / "run"
    assert run_cli(*FAST_TRAINING, "trainer.max_steps=2", "trainer.val_every=1", f"run_dir={run_dir}").returncode == 0
    other = run_cli(*FAST_TRAINING, "model.n_layers=3", "trainer.max_steps=2", f"run_dir={run_dir}")
    assert other.returncode == 2 and "model.n_layers=3" in other.stderr and "choose another run_dir" in other.stderr


def test_preflight_stops_a_run_that_cannot_fit_before_allocating(tmp_path):
    result = run_cli("model=7b", "trainer.accelerator=cpu", "parallelism.precision=32", f"run_dir={tmp_path / 'r'}")
    assert result.returncode == 2
    line = result.stderr.strip()
    assert "needs" in line and "GiB per device" in line and "available" in line and "activation_checkpointing" in line
    assert len(line.splitlines()) == 1


def test_init_from_starts_where_the_source_run_ended(tmp_path):
    source, follow = tmp_path / "source", tmp_path / "follow"
    assert run_cli(*FAST_TRAINING, "trainer.max_steps=12", "trainer.val_every=6", f"run_dir={source}").returncode == 0
    result = run_cli(*FAST_TRAINING, "trainer.max_steps=2", f"init_from={source}", f"run_dir={follow}")
    assert result.returncode == 0, result.stderr[-2000:]
    ended = json.loads((source / "summary.json").read_text())["val_loss"]
    started = json.loads((follow / "summary.json").read_text())["initial_val_loss"]
    assert started == pytest.approx(ended, abs=1e-4)


def test_continued_pretraining_from_an_exported_transformers_folder(tmp_path):
    source, folder, follow = tmp_path / "source", tmp_path / "hf", tmp_path / "follow"
    assert run_cli(*FAST_TRAINING, "trainer.max_steps=12", "trainer.val_every=6", f"run_dir={source}").returncode == 0
    exported = run_cli("export", str(source), str(folder))
    assert exported.returncode == 0, exported.stderr[-2000:]
    # Model shape and tokenizer come from the folder (config.json, tokenizer.json).
    result = run_cli(f"init_from={folder}", "trainer.seq_len=128", "trainer.micro_batch_size=16",
                     "trainer.global_batch_size=16", "trainer.max_tokens=null", "trainer.max_steps=2",
                     f"run_dir={follow}")
    assert result.returncode == 0, result.stderr[-3000:]
    config = yaml.safe_load((follow / "config.yaml").read_text())
    assert config["tokenizer"]["kind"] == "hf" and config["model"]["d_model"] == 128
    ended = json.loads((source / "summary.json").read_text())["val_loss"]
    started = json.loads((follow / "summary.json").read_text())["initial_val_loss"]
    assert started == pytest.approx(ended, abs=1e-3)  # same weights, same token ids, same validation text
