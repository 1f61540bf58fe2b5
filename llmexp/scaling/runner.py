"""Run a study on this machine: each pending run as its own `python -m llmexp` process, its
output in <study>/logs/<id>.log. Resumable: a run whose summary.json says finished is skipped,
and an interrupted one resumes from its last checkpoint (llmexp resumes a run folder by itself)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Callable, List, Tuple

import llmexp
from llmexp.scaling.study import Study, StudyRun

STOP_SECONDS = 30  # an interrupted run's grace to stop before it is killed


def finished(study: Study, run: StudyRun) -> bool:
    path = study.run_dir(run) / "summary.json"
    try:
        return json.loads(path.read_text()).get("status") == "finished"
    except (OSError, json.JSONDecodeError):
        return False


def pending(study: Study) -> List[StudyRun]:
    return [r for r in study.runs if not finished(study, r)]


@dataclass
class Outcome:
    done: List[str] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)
    failed: List[Tuple[str, str]] = field(default_factory=list)  # (run, last line of its log)
    seconds: float = 0.0


def _env(threads: int) -> dict:
    env = dict(os.environ)
    # The child imports the same llmexp as this process, installed or not.
    package_root = str(Path(llmexp.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env.setdefault("OMP_NUM_THREADS", str(threads))
    return env


def _last_line(log: Path) -> str:
    lines = [l for l in log.read_text(errors="replace").splitlines() if l.strip()] if log.is_file() else []
    return lines[-1][:300] if lines else "no output"


def run_study(study: Study, jobs: int = 1, echo: Callable[[str], None] = print) -> Outcome:
    """Run every pending run, `jobs` at a time (the CPU threads split between them)."""
    started = time.perf_counter()
    # Absolute paths: the runs do not depend on the folder the study was written from.
    study = replace(study, root=study.root.resolve())
    outcome = Outcome(skipped=[r.id for r in study.runs if finished(study, r)])
    todo = pending(study)
    env = _env(max(1, (os.cpu_count() or 1) // jobs))
    logs = study.root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    running: List[Tuple[StudyRun, subprocess.Popen, float, IO]] = []
    total = len(todo)
    by_id = {r.id: r for r in study.runs}
    previous = signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the study like Ctrl-C
    try:
        while todo or running:
            # A cooldown branch or trunk waits for the run it resumes; one whose run failed fails too.
            for run in [r for r in todo if r.after and r.after in {f for f, _ in outcome.failed}]:
                todo.remove(run)
                outcome.failed.append((run.id, f"not started: {run.after}, which it resumes, failed"))
            while len(running) < jobs:
                ready = [r for r in todo if not r.after or finished(study, by_id[r.after])]
                if not ready:
                    if not running:  # nothing runs that could unblock them (cannot happen in a designed study)
                        outcome.failed += [(r.id, f"not started: waits for {r.after}") for r in todo]
                        todo.clear()
                    break
                run = ready[0]
                todo.remove(run)
                echo(f"[{total - len(todo)}/{total}] {run.id}: N={run.params:,} D={run.tokens:,} ({run.steps} steps) ...")
                log = (logs / f"{run.id}.log").open("a")
                proc = subprocess.Popen(study.command(run, sys.executable), stdout=log, stderr=subprocess.STDOUT, env=env)
                running.append((run, proc, time.perf_counter(), log))
            time.sleep(0.5)
            for item in [r for r in running if r[1].poll() is not None]:
                running.remove(item)
                run, proc, t0, log = item
                log.close()
                _record(study, run, proc.returncode, time.perf_counter() - t0, outcome, echo)
    finally:  # interrupted: stop the runs this process started; rerunning resumes them
        signal.signal(signal.SIGTERM, previous)
        for _, proc, _, log in running:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
    outcome.seconds = time.perf_counter() - started
    return outcome


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _record(study: Study, run: StudyRun, returncode: int, seconds: float, outcome: Outcome, echo) -> None:
    if returncode == 0 and finished(study, run):
        loss = json.loads((study.run_dir(run) / "summary.json").read_text())["val_loss"]
        outcome.done.append(run.id)
        echo(f"  {run.id}: finished in {seconds:.0f} s, validation loss {loss:.4f}")
        return
    log = study.root / "logs" / f"{run.id}.log"
    why = _last_line(log)
    outcome.failed.append((run.id, why))
    echo(f"  {run.id}: FAILED (exit {returncode}) after {seconds:.0f} s: {why}  (log: {log})")
