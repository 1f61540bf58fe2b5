"""llmexp as a `@hydra.main` application: everything on the command line that is Hydra's job.

`--help` (groups and options), `--hydra-help`, `--cfg job|hydra|all` with `--package` and
`--resolve`, `--info`, `--shell-completion`, and `-m/--multirun` with Hydra's sweepers and
launchers (basic, joblib, submitit for SLURM job arrays, optuna where installed) are Hydra's own
code paths. Each multirun job composes its overrides the way a single run does (llmexp/config/
compose.py: the user's choices beat the recipe), writes into Hydra's job folder unless it names
a run_dir, and goes through the same dispatch: `dry_run` prints its plan and trains nothing.

A job that diverges, is preempted or stops on bad input says so in one line and lets the other
jobs run; at the end `SweepSummary` (llmexp/multirun_summary.py, a Hydra callback) writes the sweep's
summary.json, names each job that did not finish and exits with the first one's code. A
preempted job hands the signal to the handler the launcher installed: submitit's SIGUSR2
handler requeues the job, which resumes from the checkpoint the run just saved.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Optional, Sequence

from llmexp.config.compose import PRIMARY_CONFIG, compose_dictconfig, conf_dir, register_schema
from llmexp.config.errors import ConfigError, fail
from llmexp.config.validate import validate


def search_of(args: argparse.Namespace) -> dict:
    """Where Hydra looks for configs, from --config-dir/--config-path/--config-name."""
    search = {"config_dirs": [args.config_dir] if args.config_dir else []}
    if args.config_path:
        search["config_path"] = args.config_path
    if args.config_name:
        search["config_name"] = args.config_name
    return search


def hydra_app(args: argparse.Namespace, argv: Sequence[str]) -> None:
    """Run `argv` through a real @hydra.main app; bad overrides fail first with one line."""
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig

    search = search_of(args)
    extra = check_overrides(args, search)
    register_schema()

    @hydra.main(config_path=str(conf_dir()), config_name=PRIMARY_CONFIG, version_base="1.3")
    def job(_: DictConfig) -> Optional[float]:
        from llmexp.dispatch import dispatch
        from llmexp.plan import derive

        overrides = list(HydraConfig.get().overrides.task)
        if not any(o.lstrip("+").startswith("run_dir=") for o in overrides):
            overrides.append(f"run_dir={HydraConfig.get().runtime.output_dir}")
        sources: dict = {}
        try:
            cfg = validate(compose_dictconfig(overrides, sources=sources, **search))
            plan = derive(cfg)
        except ConfigError as err:
            fail(str(err))
        try:
            summary = dispatch(cfg, plan, overrides, search["config_dirs"], sources)
        except SystemExit as stopped:  # its one line is printed; the sweep goes on (SweepSummary)
            if not stopped.code:
                raise
            _hand_over_preemption(cfg.run_dir, stopped)
            return float("nan")  # an optimizing sweeper (optuna) counts the trial as failed
        return summary["val_loss"] if summary else None  # what optimizing sweepers (optuna) minimise

    sys.argv = [sys.argv[0] or "llmexp", *argv, *extra]
    job()


def _hand_over_preemption(run_dir: str, stopped: SystemExit) -> None:
    """A preempted job hands its signal to the handler that was in place before the run (Lightning
    puts it back when fit ends): submitit's requeues the job (SIGUSR2) or logs it (SIGTERM). With
    none (the basic launcher runs jobs in this process), the signal was for the whole sweep: it
    stops, as a single run does."""
    summary_file = Path(run_dir) / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    if summary.get("status") != "preempted":
        return
    signum = signal.Signals.__members__.get(summary.get("signal", ""))
    handler = signal.getsignal(signum) if signum is not None else None
    if not callable(handler):
        raise stopped
    handler(signum, None)


def check_overrides(args: argparse.Namespace, search: dict) -> list[str]:
    """Validate what Hydra would run before handing over, so a bad value is one line and exit 2
    (Hydra's own report is two lines and exit 1). A multirun with the basic sweeper has every
    job validated; another sweeper's search space (optuna's ranges) is its own to check.
    Returns the overrides that make the user's choices beat the recipe (for --cfg)."""
    if args.shell_completion or args.hydra_help or args.experimental_rerun:
        return []
    try:
        if not args.multirun:
            extra: list[str] = []
            validate(compose_dictconfig(args.overrides, precedence=extra, **search))
            return extra
        hydra_choices = [o for o in args.overrides if o.startswith("hydra/")]
        if hydra_choices:  # the launcher and sweeper exist (a job's overrides leave Hydra's groups out)
            compose_dictconfig(hydra_choices, **search)
        for job_overrides in _basic_sweep(args.overrides):
            validate(compose_dictconfig(job_overrides, **search))
    except ConfigError as err:
        fail(str(err))
    return []


def _basic_sweep(overrides: Sequence[str]) -> list[list[str]]:
    """Every job of the basic sweeper's grid; none when another sweeper is chosen."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if any(o.startswith("hydra/sweeper=") and o != "hydra/sweeper=basic" for o in overrides):
        return []
    try:
        parsed = OverridesParser.create().parse_overrides([o for o in overrides if not o.startswith("hydra")])
    except Exception as err:  # Hydra's OverrideParseException: the override's syntax
        raise ConfigError("override", " ".join(overrides), f"not valid Hydra override syntax: {str(err).splitlines()[0]}") from None
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
