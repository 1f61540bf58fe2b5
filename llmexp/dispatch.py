"""What a validated command-line config does: a pipeline runs its steps, `dry_run` prints the
plan and trains nothing, anything else runs (llmexp/execute.py). The single-run fast path
(llmexp/cli.py) and every Hydra multirun job (llmexp/multirun.py) go through here, so
`-m ... dry_run=true` prints one plan per job and trains nothing."""
from __future__ import annotations

import json
from typing import Any, Optional, Sequence

from llmexp.config.errors import ConfigError, fail
from llmexp.config.schema import Config
from llmexp.plan import Plan, format_plan


def dispatch(cfg: Config, plan: Plan, overrides: Sequence[str], config_dirs: Sequence[str] = (),
             sources: Optional[dict[str, str]] = None) -> Optional[dict[str, Any]]:
    """A validated config from the command line (single run or one multirun job): a pipeline
    runs its steps, `dry_run` prints the plan (with where each budget/batch value came from)
    and trains nothing, anything else runs. Returns the run's summary (None for a dry run)."""
    if cfg.pipeline:  # an experiment/ chain: every step is planned before the first one runs
        from llmexp.data.sources import DataError  # lazily: a dry run needs no torch
        from llmexp.execute import exit_stopped
        from llmexp.outcomes import RunStopped
        from llmexp.pipeline import pipeline_main
        from llmexp.run import PreflightError

        try:
            pipeline_main(cfg, overrides, config_dirs)
        except (ConfigError, PreflightError, DataError) as err:
            fail(str(err))
        except RunStopped as stop:  # a step diverged or was preempted
            exit_stopped(stop)
        return None
    if cfg.dry_run == "json":
        print(json.dumps({**plan.to_dict(), "sources": sources or {}}, indent=2))
        return None
    if cfg.dry_run:
        print(format_plan(plan))
        if sources:
            print("  values from     " + "\n                  ".join(f"{k}={v}" for k, v in sources.items()))
        return None
    from llmexp.execute import execute

    return execute(cfg, plan, overrides)
