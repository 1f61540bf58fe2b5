"""Run integrity at the seams (issue 12), as a user meets it on the command line: a run killed
with SIGKILL at any step (during a checkpoint save too) or stopped by SIGTERM, then rerun with
the same command, ends exactly where an uninterrupted run does, across several passes over
its data, with the same metrics.csv; a diverging run stops with its own status and exit code.

The training data is a few hundred tokens, so one pass over it (a data epoch) takes a few
steps and every run here crosses several of them."""
from __future__ import annotations

import csv
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import pytest
import torch

from tests.conftest import REPO, run_cli

MODEL = ["model.name=micro", "model.n_layers=2", "model.d_model=64", "model.n_heads=4", "model.n_kv_heads=4",
         "model.ffn_dim=176", "model.max_seq_len=64", "tokenizer.vocab_size=300"]
STEPS = 24
TRAIN = ["trainer=debug", "trainer.seq_len=32", "trainer.micro_batch_size=2", "trainer.global_batch_size=4",
         f"trainer.max_steps={STEPS}", "trainer.checkpoint_every=2", "trainer.log_every=1", "trainer.val_every=6",
         "trainer.val_batches=2", "parallelism.precision=32", "optimizer.warmup_steps=4"]
DDP = ["parallelism=ddp", "trainer.devices=2"]
TIMING_COLUMNS = {"throughput/tokens_per_s"}
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """~40 short documents: ~10 training windows of 32 tokens, one data epoch every ~3 steps."""
    rng = random.Random(0)
    words = "the a cat dog sat ran on under mat log red blue big small".split()
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    with path.open("w") as f:
        for _ in range(40):
            f.write(json.dumps({"text": " ".join(rng.choice(words) for _ in range(rng.randint(6, 14))) + "."}) + "\n")
    return path


def pretrain(corpus: Path, run_dir: Path, *extra: str) -> list[str]:
    return [*MODEL, *TRAIN, "data=jsonl", f"data.sources.0.path={corpus}", "data.val_fraction=0.2",
            f"run_dir={run_dir}", *extra]


def checkpoint_step(path: Path) -> int:
    try:
        return torch.load(path, weights_only=True, map_location="cpu")["global_step"]
    except (FileNotFoundError, RuntimeError, EOFError, KeyError):
        return -1


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "llmexp", *args], cwd=REPO, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)


def interrupt(args: list[str], run_dir: Path, at_step: int, sig: int = signal.SIGKILL, during_save: bool = False,
              saving_past: Optional[int] = None) -> int:
    """Start the run, send `sig` once its last.ckpt reached `at_step`, or while a checkpoint is
    being written (`during_save`), or an interval checkpoint of a step after `saving_past` (once
    one exists, at once); wait for it to end; the step of the checkpoint it left."""
    proc = start(args)
    checkpoints = run_dir / "checkpoints"
    deadline = time.time() + 300
    while proc.poll() is None:
        assert time.time() < deadline, "the run neither reached the step nor ended"
        if during_save and any(checkpoints.glob(".*.tmp")):
            break
        if saving_past is not None and any(step > saving_past for step in interval_checkpoint_steps(checkpoints)):
            break
        if not during_save and saving_past is None and checkpoint_step(checkpoints / "last.ckpt") >= at_step:
            break
        time.sleep(0.002 if during_save or saving_past is not None else 0.1)
    os.killpg(proc.pid, sig)  # the whole session: ddp's worker processes too
    _, stderr = proc.communicate(timeout=120)
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    return checkpoint_step(checkpoints / "last.ckpt")


def interval_checkpoint_steps(checkpoints: Path) -> list[int]:
    """Steps of the step-N checkpoints in the folder, written or being written."""
    return [int(m.group(1)) for p in checkpoints.glob("*step-*") if (m := re.match(r"\.?step-(\d+)\.ckpt", p.name))]


def metrics_rows(run_dir: Path) -> list[dict]:
    with (run_dir / "metrics.csv").open(newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in csv.DictReader(f)]


def unlog_validation(run_dir: Path, checkpoint: int) -> None:
    """As if a kill came between the checkpoint of a validation step and the end of that
    validation: metrics.csv without it."""
    rows = [r for r in metrics_rows(run_dir) if not (r["val/loss"] and int(r["step"]) >= checkpoint - 1)]
    with (run_dir / "metrics.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def assert_same_run(straight: Path, resumed: Path) -> None:
    a, b = metrics_rows(straight), metrics_rows(resumed)
    assert [r["step"] for r in b] == [r["step"] for r in a]  # same labels, no repeated rows
    for row_a, row_b in zip(a, b):
        for key, value in row_a.items():
            if value and key not in ("step", "epoch"):
                assert float(row_b[key]) == pytest.approx(float(value), abs=1e-5), (row_a["step"], key)
            else:
                assert row_b[key] == value, (row_a["step"], key)
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (straight, resumed))
    assert sb["status"] == sa["status"] == "finished"
    assert sb["steps"] == sa["steps"] == STEPS
    assert sb["val_loss"] == pytest.approx(sa["val_loss"], abs=1e-5)


@pytest.fixture(scope="module")
def straight(corpus, tmp_path_factory) -> Path:
    """The uninterrupted pretraining run the interrupted ones are compared with."""
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    result = run_cli(*pretrain(corpus, run_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "is repeated" in result.stdout  # the run makes several passes over its data
    return run_dir


def test_pretraining_killed_anywhere_then_rerun_equals_the_uninterrupted_run(corpus, straight, tmp_path):
    killed = tmp_path / "killed"
    checkpoints = killed / "checkpoints"
    args = pretrain(corpus, killed, "trainer.checkpoint_every=6")  # on validation steps (val_every=6)
    stops = [interrupt(args, killed, 6)]
    unlog_validation(killed, stops[0])
    stops.append(interrupt(args, killed, 0, during_save=True))  # the rerun's first save, whichever it is
    resumed_from = (checkpoints / "last.ckpt").resolve()
    saved = resumed_from.stat().st_ino
    # Killed while it writes its next interval checkpoint: one micro-batch after resuming it must
    # not have written the checkpoint it resumed from again (mid-accumulation: a rerun from that
    # one accumulates half a step), so last.ckpt is still the first attempt's step-6 file.
    stops.append(interrupt(args, killed, 0, saving_past=stops[1]))
    assert resumed_from.stat().st_ino == saved, "the checkpoint a run resumed from was written again"
    assert stops[0] >= 6 and stops == sorted(stops) and stops[-1] < STEPS
    result = run_cli(*args)  # the same command again, to the end
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_run(straight, killed)


def test_sigterm_saves_then_the_rerun_equals_the_uninterrupted_run(corpus, straight, tmp_path):
    stopped = tmp_path / "stopped"
    args = pretrain(corpus, stopped, "trainer.checkpoint_every=50")  # no interval checkpoint: SIGTERM's is the one
    proc = start(args)
    deadline = time.time() + 300
    while "train/loss" not in (stopped / "metrics.csv").read_text() if (stopped / "metrics.csv").is_file() else True:
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-2000:]
    line = stderr.strip().splitlines()[-1]
    assert line.startswith("llmexp: stopped by SIGTERM at step") and "rerun the same command" in line
    summary = json.loads((stopped / "summary.json").read_text())
    step = checkpoint_step(stopped / "checkpoints" / "last.ckpt")
    assert summary["status"] == "preempted" and 0 < summary["steps"] == step < STEPS
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_run(straight, stopped)
    # One bar over the whole run's optimizer steps, starting where the rerun resumed.
    shown = [(int(n), int(total)) for n, total in re.findall(r"steps:.*?\| *(\d+)/(\d+) \[", result.stdout)]
    assert shown and shown[0] == (step, STEPS) and shown[-1] == (STEPS, STEPS), (shown, result.stdout[-1500:])
    assert {total for _, total in shown} == {STEPS} and [n for n, _ in shown] == sorted(n for n, _ in shown)


def test_a_diverging_run_stops_with_its_own_status_and_exit_code(corpus, tmp_path):
    run_dir = tmp_path / "nan"
    result = run_cli(*pretrain(corpus, run_dir, "optimizer.lr=1e6", "optimizer.warmup_steps=0",
                               "optimizer.grad_clip=null"))
    assert result.returncode == 3, result.stderr[-3000:]
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("llmexp: training diverged:") and "at step" in line and "checkpoint" in line
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["steps"] < STEPS
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("override, key", [("optimizer.lr=inf", "optimizer.lr"), ("optimizer.lr=nan", "optimizer.lr"),
                                           ("model.init_std=inf", "model.init_std"), ("trainer.seed=-1", "trainer.seed"),
                                           ("trainer.keep_checkpoints=0", "trainer.keep_checkpoints")])
def test_values_that_cannot_train_are_refused_in_one_line(override, key):
    result = run_cli("trainer=debug", override, "dry_run=true")
    assert result.returncode == 2 and result.stderr.strip().startswith(f"llmexp: error: {key}=")
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_second_writer_is_refused_and_a_corrupt_last_checkpoint_falls_back(corpus, tmp_path):
    run_dir = tmp_path / "run"
    args = pretrain(corpus, run_dir, "trainer.max_steps=6")
    assert run_cli(*args).returncode == 0
    checkpoints = run_dir / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("step-*.ckpt")) == ["step-00000004.ckpt", "step-00000006.ckpt"]
    (checkpoints / ".last.ckpt.abc.tmp").write_bytes(b"half a checkpoint")  # a kill mid-save
    (checkpoints / "last.ckpt").write_bytes((checkpoints / "last.ckpt").read_bytes()[:1000])  # truncated
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from llmexp.rundir import lock_run_dir; h = lock_run_dir(Path(sys.argv[1])); "
                               "print('locked', flush=True); time.sleep(600)", str(run_dir)],
                              cwd=REPO, env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"  # another llmexp process holds the folder
        second = run_cli(*args[:-1], "trainer.max_steps=8")
    finally:
        holder.kill()
        holder.wait()
    assert second.returncode == 2 and "in use by another llmexp process" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    result = run_cli(*args[:-1], "trainer.max_steps=8")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "last.ckpt is unreadable (truncated or corrupt); resuming from step-00000006.ckpt" in result.stderr
    assert not list(checkpoints.glob(".*.tmp"))
    assert checkpoint_step(checkpoints / "last.ckpt") == 8


def killed_and_rerun_equals_straight(straight_args: list[str], killed_args: list[str], killed: Path, straight: Path) -> None:
    result = run_cli(*straight_args)
    assert result.returncode == 0, result.stderr[-3000:]
    rng = random.Random(12)
    stops = [interrupt(killed_args, killed, rng.randint(2, 8)), interrupt(killed_args, killed, 0, during_save=True),
             interrupt(killed_args, killed, rng.randint(12, 18))]
    assert stops == sorted(stops) and stops[-1] < STEPS
    result = run_cli(*killed_args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_run(straight, killed)


@pytest.mark.slow
def test_ddp_pretraining_killed_three_times_equals_the_uninterrupted_run(corpus, tmp_path):
    ddp, killed = tmp_path / "straight", tmp_path / "killed"
    killed_and_rerun_equals_straight(pretrain(corpus, ddp, *DDP), pretrain(corpus, killed, *DDP), killed, ddp)


@pytest.fixture(scope="module")
def chats(tmp_path_factory) -> Path:
    """14 short conversations: with 2 x 2 per step, a pass over the training ones every ~3 steps."""
    path = tmp_path_factory.mktemp("chats") / "chats.jsonl"
    rng = random.Random(1)
    with path.open("w") as f:
        for i in range(14):
            letters = rng.sample("abcdefgh", 4)
            f.write(json.dumps({"messages": [{"role": "user", "content": "sort " + " ".join(letters)},
                                             {"role": "assistant", "content": " ".join(sorted(letters))}]}) + "\n")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("layout", [[], DDP], ids=["single", "ddp"])
def test_sft_killed_three_times_equals_the_uninterrupted_run(corpus, chats, tmp_path, layout):
    base = tmp_path / "base"
    assert run_cli(*pretrain(corpus, base, "trainer.max_steps=4")).returncode == 0

    def sft(run_dir: Path) -> list[str]:
        return [*TRAIN, "stage=sft", f"init_from={base}", f"stage.dataset={chats}", "stage.val_fraction=0.15",
                "stage.truncation=right", "trainer.seq_len=64", f"run_dir={run_dir}", *layout]
    killed_and_rerun_equals_straight(sft(tmp_path / "straight"), sft(tmp_path / "killed"), tmp_path / "killed",
                                     tmp_path / "straight")


def test_the_progress_bar_of_a_resumed_run_counts_the_run_s_steps_and_times_the_rest(tmp_path):
    """The bar of a run resumed at step 4 of 8 (2 micro-batches a step) shows 4/8 at its start
    and its ETA from the steps this process ran: at 1 s a step, 6/8 after 2 s is 2 s from the end
    (Lightning's own bar would say 3 steps/s)."""
    import lightning as L
    from lightning.pytorch.demos.boring_classes import BoringModel

    from llmexp.build import TrainingBar

    class Clock(L.Callback):  # tqdm's clock, one second per optimizer step
        def __init__(self):
            self.now, self.shown = 0.0, {}

        def on_train_start(self, trainer, pl_module):  # after the bar's own
            bar.train_progress_bar._time = lambda: self.now
            bar.train_progress_bar.start_t = self.now

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.now += 0.5

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if (batch_idx + 1) % 2 == 0:
                self.shown[trainer.global_step] = str(bar.train_progress_bar)

    def trainer(steps: int, *callbacks) -> L.Trainer:
        return L.Trainer(max_steps=steps, accumulate_grad_batches=2, logger=False, enable_checkpointing=False,
                         enable_model_summary=False, default_root_dir=tmp_path, callbacks=list(callbacks))

    first = trainer(4)
    first.fit(BoringModel())
    first.save_checkpoint(tmp_path / "step4.ckpt")
    bar, clock = TrainingBar(), Clock()
    trainer(8, bar, clock).fit(BoringModel(), ckpt_path=tmp_path / "step4.ckpt", weights_only=True)
    assert sorted(clock.shown) == [5, 6, 7, 8]
    assert bar.train_progress_bar.total == 8 and bar.train_progress_bar.initial == 4
    for step, times in ((5, "00:01<00:03"), (6, "00:02<00:02"), (8, "00:04<00:00")):
        assert re.search(rf"\| {step}/8 \[{times}, +1\.00it/s", clock.shown[step]), clock.shown[step]


def sweep_outcome(sweep: Path) -> dict[int, dict]:
    return {job["job"]: job for job in json.loads((sweep / "summary.json").read_text())["jobs"]}


def test_a_diverged_job_of_a_multirun_leaves_the_others_running_and_the_summary_names_it(corpus, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli("-m", *MODEL, *TRAIN, "data=jsonl", f"data.sources.0.path={corpus}", "data.val_fraction=0.2",
                     "trainer.max_steps=6", "optimizer.warmup_steps=0", "optimizer.grad_clip=null",
                     "optimizer.lr=1e6,1e-3", f"hydra.sweep.dir={sweep}")
    assert result.returncode == 3, result.stderr[-3000:]  # the first job that did not finish: diverged
    jobs = sweep_outcome(sweep)
    assert jobs[0]["status"] == "diverged" and jobs[0]["overrides"][-1] == "optimizer.lr=1000000.0"
    assert jobs[1]["status"] == "finished" and jobs[1]["val_loss"] > 0  # ran after the diverged one
    assert json.loads((sweep / "1" / "summary.json").read_text())["steps"] == 6
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("llmexp: sweep job 0 (") and "optimizer.lr=1000000.0) diverged: training diverged:" in line
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_submitit_requeues_a_job_preempted_by_its_signal_and_the_job_resumes(corpus, tmp_path):
    """Hydra's submitit launcher (local executor): SIGUSR2, submitit's preemption/timeout warning,
    reaches job 0 mid-run: it saves, submitit requeues it, and the requeued job resumes from that
    checkpoint to the end; job 1 diverges meanwhile; SIGTERM stops job 2 after a save (no
    requeue); the multirun ends with the first unfinished job's code, the diverged one's."""
    import psutil

    data = ["data=jsonl", f"data.sources.0.path={corpus}", "data.val_fraction=0.2"]
    assert run_cli("prepare", *MODEL, *TRAIN, *data).returncode == 0  # the jobs start at once
    sweep = tmp_path / "sweep"
    log = (tmp_path / "multirun.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "llmexp", "-m", "hydra/launcher=local", *MODEL, *TRAIN, *data,
                             "optimizer.warmup_steps=0", "optimizer.grad_clip=null", "optimizer.lr=1e-3,1e6,3e-3",
                             f"hydra.sweep.dir={sweep}"], cwd=REPO, env=ENV, stdout=log, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    deadline = time.time() + 300
    for job, sig in (("0", signal.SIGUSR2), ("2", signal.SIGTERM)):
        metrics = sweep / job / "metrics.csv"
        while not (metrics.is_file() and "train/loss" in metrics.read_text()):
            assert time.time() < deadline and proc.poll() is None, (tmp_path / "multirun.log").read_text()[-3000:]
            time.sleep(0.05)
        psutil.Process(int((sweep / job / ".lock").read_text())).send_signal(sig)  # the job's process holds its folder
    assert proc.wait(timeout=600) == 3, (tmp_path / "multirun.log").read_text()[-3000:]
    jobs = sweep_outcome(sweep)
    assert [jobs[n]["status"] for n in range(3)] == ["finished", "diverged", "preempted"]
    assert 0 < json.loads((sweep / "2" / "summary.json").read_text())["steps"] == checkpoint_step(
        sweep / "2" / "checkpoints" / "last.ckpt") < STEPS
    summary = json.loads((sweep / "0" / "summary.json").read_text())
    assert summary["steps"] == STEPS
    assert len((sweep / "0" / "command.txt").read_text().splitlines()) == 2  # two attempts, one run folder
    logs = "".join(p.read_text() for p in (sweep / ".submitit").glob("*/*_log.*"))
    saved = int(re.search(r"llmexp: stopped by SIGUSR2 at step (\d+)", logs)[1])  # then handed to submitit
    assert "Requeued job" in logs
    resumed = Path(re.search(r"resuming from (\S+)", logs)[1])  # last.ckpt, or the step-N.ckpt it links to
    assert resumed.parent == sweep / "0" / "checkpoints" and resumed.name in ("last.ckpt", f"step-{saved:08d}.ckpt")
    steps = [int(r["step"]) for r in metrics_rows(sweep / "0") if r["train/loss"]]
    assert steps == list(range(STEPS)), steps  # each step once, in order, across the two attempts


@pytest.mark.slow  # three attempts under W&B: about 80 s on 2 cores
def test_every_attempt_continues_one_wandb_run_whose_history_is_the_uninterrupted_run_s_once(corpus, straight, tmp_path):
    """kill -9, then SIGTERM, then the rerun to the end, under logger=wandb (offline): one W&B
    run id for the run folder, W&B's folder per attempt, and read in order (as `wandb sync`
    uploads them) their history holds every metric of the uninterrupted run once, steps ascending."""
    from llmexp.tracking import wandb_attempts, wandb_history, wandb_records

    run_dir = tmp_path / "run"
    args = pretrain(corpus, run_dir, "logger=wandb", "trainer.checkpoint_every=6")  # on validation steps
    killed = interrupt(args, run_dir, 6)
    unlog_validation(run_dir, killed)  # the next attempt first logs that validation (ResumedValidation)
    assert interrupt(args, run_dir, killed + 6, sig=signal.SIGTERM) > killed
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_run(straight, run_dir)
    run_id = (run_dir / "wandb" / "run_id").read_text().strip()
    attempts = wandb_attempts(run_dir, run_id)
    assert len(attempts) == 3 and len(list((run_dir / "wandb").glob("*run-*"))) == 3  # one run id, three attempts
    # (A kill -9 may leave its attempt's log empty: W&B writes it every 15 s. The next attempt
    # sends what metrics.csv holds and W&B lost.)
    assert {r.run.run_id for log in attempts for r in wandb_records(log) if r.WhichOneof("record_type") == "run"} == {run_id}
    listed = subprocess.run([sys.executable, "-m", "wandb", "sync", "--dry-run", str(run_dir / "wandb")],
                            capture_output=True, text=True, env=ENV, timeout=120)
    assert "Would sync 3 run(s)" in listed.stdout + listed.stderr, listed.stdout + listed.stderr  # wandb sync's view
    history = wandb_history(run_dir, run_id)
    assert [step for step, _ in history] == sorted(step for step, _ in history)
    pairs = [(step, key) for step, row in history for key in row]
    assert len(pairs) == len(set(pairs))  # no metric repeated at a step
    logged = {(step, key): value for step, row in history for key, value in row.items() if key not in TIMING_COLUMNS}
    expected = {(int(row["step"]), key): float(value) for row in metrics_rows(straight)
                for key, value in row.items() if value and key not in ("step", "epoch")}
    assert logged.keys() == expected.keys(), (sorted(logged.keys() - expected.keys()), sorted(expected.keys() - logged.keys()))
    worst = max(abs(logged[k] - v) for k, v in expected.items())
    print(f"W&B history vs the uninterrupted run: {len(expected)} values, max |diff| {worst:.2e}")
    assert worst <= 1e-5
