"""W&B sweeps for llmexp: sweep files <-> runs, online (`wandb agent`) and offline.

    python -m llmexp.sweep sweeps/lr_bayes.yaml --count 8     # offline, on W&B's own engine
    python -m llmexp.sweep sweeps/lr_bayes.yaml --check       # both schemas, nothing runs

Modules, one job each: sweepfile (load + W&B's schema), check (llmexp's schema), overrides
(parameter values as Hydra reads them; `agent_overrides` for the program side), command (the
agent's command expansion), engine (the loop on `sweeps.next_run`/`stop_runs`), runner (a run
as a child process), state (state.json), report (tables, plot, best command), driver (the CLI's
body), compat (the `sweeps` package under pydantic 2). See docs/sweeps.md.
"""
from llmexp.sweep.errors import SweepError
from llmexp.sweep.overrides import agent_overrides

__all__ = ["SweepError", "agent_overrides"]
