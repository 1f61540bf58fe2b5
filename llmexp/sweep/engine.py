"""The offline sweep loop on W&B's own engine: `sweeps.next_run` picks each run's parameters
(grid, random, bayes), the run executes as a child process with W&B offline, its metrics.csv is
read while it runs, `sweeps.stop_runs` (hyperband) decides whether it goes on, and the outcome
goes back to the engine for the next suggestion. Runs go one at a time."""
from __future__ import annotations

import os
import random
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from llmexp.sweep.command import expand
from llmexp.sweep.compat import engine, plain
from llmexp.sweep.errors import SweepError
from llmexp.sweep.overrides import to_override
from llmexp.sweep.runner import RunProcess, stop_leftover
from llmexp.sweep.state import ACTIVE, RunRecord, SweepState
from llmexp.sweep.sweepfile import SweepFile

Precheck = Callable[[dict[str, Any]], None]  # raises SweepError when a run's config is invalid


def read_history(run_dir: Path) -> Optional[list[dict[str, Any]]]:
    """metrics.csv -> one row per step, as W&B's history would hold it ({"_step": s, name: v});
    None while the file is mid-write."""
    from llmexp.callbacks import read_metrics

    try:
        series = read_metrics(run_dir / "metrics.csv")
    except (ValueError, KeyError):  # a row cut short by a concurrent write: read it next poll
        return None
    rows: dict[int, dict[str, Any]] = {}
    for name, points in series.items():
        for step, value in points:
            rows.setdefault(step, {"_step": step})[name] = value
    return [rows[s] for s in sorted(rows)]


def read_summary(run_dir: Path) -> dict[str, Any]:
    import json

    path = run_dir / "summary.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        return {}


@dataclass
class Engine:
    sweep: SweepFile
    sweep_dir: Path
    state: SweepState
    precheck: Optional[Precheck] = None
    poll_s: float = 2.0
    log: Callable[[str], None] = print
    interpreter: str = sys.executable
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    @property
    def state_path(self) -> Path:
        return self.sweep_dir / "state.json"

    def save(self) -> None:
        self.state.save(self.state_path)

    def run(self, count: Optional[int]) -> None:
        """Finish the runs a previous driver left, then add runs until the sweep holds `count`
        (None: until the grid is exhausted)."""
        for record in self.state.runs:
            if record.state in ACTIVE:
                stop_leftover(record.pid, record.run_dir)
                self.log(f"[{record.id}] continuing a run the previous driver left {record.state}")
                self.execute(record)
        while count is None or len(self.state.runs) < count:
            params = self.suggest()
            if params is None:
                self.log(f"{self.sweep.method} sweep exhausted after {len(self.state.runs)} runs")
                break
            record = self.state.add_run(params, self.sweep_dir)
            self.save()
            self.execute(record)

    def suggest(self) -> Optional[dict[str, Any]]:
        import numpy as np

        sweeps = engine()
        # random and bayes draw from numpy's and Python's global generators: seeding them from
        # (seed, run number) makes a sweep, and a continued one, repeat its suggestions
        n = len(self.state.runs)
        np.random.seed([self.state.seed, n])
        random.seed(f"{self.state.seed}-{n}")
        with warnings.catch_warnings():  # the Gaussian process's fit notes are not the user's business
            warnings.filterwarnings("ignore", module=r"sklearn\.")
            suggestion = sweeps.next_run(self.sweep.config, self.state.engine_runs(), validate=True)
        if suggestion is None:
            return None
        order = list(self.sweep.parameters) + [k for k in suggestion.config if k not in self.sweep.parameters]
        return {name: plain(suggestion.config[name]["value"]) for name in order if name in suggestion.config}

    def argv(self, record: RunRecord) -> list[str]:
        argv = expand(self.sweep.command, record.params, self.sweep.program, self.interpreter)
        return argv + [to_override("run_dir", record.run_dir)]

    def env(self, record: RunRecord) -> dict[str, str]:
        """What a W&B agent gives its runs (the run id, the parameter file), W&B offline, a W&B
        group named after the sweep, and the llmexp this driver imported first on the path.

        Not WANDB_SWEEP_ID: this sweep exists on no W&B server, and with a sweep id wandb.init
        ignores the run's project; without it the offline runs `wandb sync` as ordinary runs.
        Not WANDB_SERVICE either, as W&B's agent drops it: with the token of a W&B service this
        process's parent started, a run would log through that service, which writes the run's
        files on its own time -- after the run has exited, or only when that parent exits."""
        from wandb import env as wandb_env
        from wandb.sdk.lib import config_util

        params_file = self.sweep_dir / "params" / f"config-{record.id}.yaml"
        config_util.save_config_file_from_dict(str(params_file), {k: {"value": v} for k, v in record.params.items()})
        import llmexp

        root = str(Path(llmexp.__file__).resolve().parents[1])
        env = {k: v for k, v in self.environ.items() if k != wandb_env.SERVICE}
        env.setdefault("WANDB_RUN_GROUP", f"{self.sweep.name}-{self.state.sweep_id}")
        env.update(
            WANDB_MODE="offline", WANDB_RUN_ID=record.id, WANDB_SWEEP_PARAM_PATH=str(params_file.resolve()),
            PYTHONPATH=os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p),
        )
        return env

    def execute(self, record: RunRecord) -> None:
        shown = " ".join(f"{k}={v}" for k, v in record.params.items())
        if self.precheck is not None:
            try:
                self.precheck(record.params)
            except SweepError as err:
                record.state, record.error, record.ended = "failed", str(err), time.time()
                self.save()
                self.log(f"[{record.id}] {shown}: failed before starting: {err}")
                return
        run_dir = Path(record.run_dir)
        record.attempts += 1
        record.state, record.exit_code, record.error = "running", None, None
        record.started = record.started or time.time()
        self.log(f"[{record.id}] {shown}: running (log: {self.sweep_dir / 'logs' / (record.id + '.log')})")
        process = RunProcess(self.argv(record), self.env(record), self.sweep_dir / "logs" / f"{record.id}.log")
        record.pid = process.pid
        self.save()
        try:
            code = self.watch(record, process)
        except BaseException:  # Ctrl-C or a crash of the driver: stop the run, keep it "running"
            process.stop()
            record.pid = None
            self.save()
            raise
        self.refresh(record)
        record.pid, record.exit_code, record.ended = None, code, time.time()
        record.summary = read_summary(run_dir)
        if record.stopped:
            record.state = "killed"
        elif code == 0:
            record.state = "finished"
        else:
            record.state = "failed"
            record.error = f"exit code {code}: {process.failure()}"
        self.save()
        value = record.last(self.sweep.metric)
        outcome = "stopped early" if record.stopped else record.state
        self.log(f"[{record.id}] {shown}: {outcome}, {self.sweep.metric}={value}"
                 + (f" ({record.stop_reason})" if record.stop_reason else "")
                 + (f" ({record.error})" if record.error else ""))

    def watch(self, record: RunRecord, process: RunProcess) -> int:
        """Poll the run until it exits; stop it when early termination says so."""
        while True:
            code = process.wait(self.poll_s)
            if code is not None:
                return code
            if not self.refresh(record):
                continue
            self.save()
            if self.sweep.early_terminate:
                reason = self.should_stop(record)
                if reason:
                    record.stopped, record.stop_reason = True, reason
                    return process.stop()

    def refresh(self, record: RunRecord) -> bool:
        """Re-read the run's metrics; whether anything new arrived. Only the steps that logged
        the sweep's metric are kept: all the engine and the reports use, and state.json stays
        small however long the runs."""
        history = read_history(Path(record.run_dir))
        if history is None:
            return False
        metric = self.sweep.metric
        history = [{"_step": row["_step"], metric: row[metric]} for row in history if metric in row]
        if history == record.history:
            return False
        record.history = history
        return True

    def should_stop(self, record: RunRecord) -> Optional[str]:
        sweeps = engine()
        for run in sweeps.stop_runs(self.sweep.config, self.state.engine_runs(), validate=True):
            if run.name == record.id:
                # info lines: "Bands: ..." (all of them), then "Run: <name> Step: <n> (Metric: <its
                # best> Band: <b> Threshold <t>) STOP" for each running run: keep this run's
                lines = (run.early_terminate_info or {}).get("lines") or []
                mine = [line for line in lines if line.startswith(f"Run: {record.id} ")]
                return f"hyperband: {mine[-1]}" if mine else "hyperband"
        return None
