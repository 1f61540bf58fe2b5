"""`python -m llmexp.sweep SWEEP.yaml`: validate a sweep file against W&B's schema and llmexp's,
then run it offline on W&B's engine, continuing whatever an earlier invocation left in the
sweep folder, and write the reports."""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

from llmexp.sweep.check import check_run, check_sweep, program_args_or_fail, split_program_args
from llmexp.sweep.engine import Engine
from llmexp.sweep.errors import SweepError
from llmexp.sweep.report import write_reports
from llmexp.sweep.state import SweepState
from llmexp.sweep.sweepfile import SweepFile, load_sweep


def default_dir(sweep_path: str | Path) -> Path:
    return Path("runs") / "sweeps" / Path(sweep_path).stem


@contextmanager
def exclusive(sweep_dir: Path) -> Iterator[None]:
    """One driver per sweep folder; the kernel drops the lock if the driver dies."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with open(sweep_dir / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SweepError(f"{sweep_dir}: another driver is running this sweep") from None
        handle.write(str(os.getpid()))
        handle.flush()
        yield


def llmexp_precheck(sweep: SweepFile) -> Callable[[dict], None]:
    """Each suggested run is composed before it starts: an invalid one fails in a second."""
    fixed, config_dirs = split_program_args(program_args_or_fail(sweep))
    return lambda params: check_run(sweep, params, fixed, config_dirs)


def run_sweep(
    sweep_path: str | Path, count: Optional[int] = None, sweep_dir: Optional[str | Path] = None,
    seed: int = 0, poll_s: float = 2.0, check: bool = True, log: Callable[[str], None] = print,
) -> tuple[SweepFile, SweepState, Path]:
    """Run (or continue) a sweep until it holds `count` runs (grid: by default all of it).

    `check=False` skips llmexp's checks: for a program other than llmexp (tests use one)."""
    sweep = load_sweep(sweep_path)
    if check:
        report = check_sweep(sweep)
        log(f"{sweep.path}: valid for W&B and llmexp ({report.combinations} parameter combinations composed)")
        for note in report.notes:
            log(f"  note: {note}")
    if count is None and sweep.method != "grid":
        raise SweepError(f"{sweep.path}: a {sweep.method} sweep does not end by itself: give --count N")
    sweep_dir = Path(sweep_dir or default_dir(sweep_path))
    with exclusive(sweep_dir):
        state_path = sweep_dir / "state.json"
        state = SweepState.load(state_path)
        if state is None:
            state = SweepState.new(sweep.path.resolve(), sweep.config, seed)
            state.save(state_path)
        elif state.config != sweep.config:
            raise SweepError(f"{sweep_dir} holds a sweep run from a different version of {sweep.path}: choose another --dir")
        else:
            log(f"{sweep_dir}: continuing sweep {state.sweep_id} ({len(state.runs)} runs so far)")
        engine = Engine(sweep, sweep_dir, state, precheck=llmexp_precheck(sweep) if check else None,
                        poll_s=poll_s, log=log)
        try:
            engine.run(count)
        finally:  # a partial sweep gets its reports too
            if state.runs:
                write_reports(sweep, state, sweep_dir)
    return sweep, state, sweep_dir
