"""Running one validated config: `stage=eval` evaluates, every other stage trains, with lm-eval
scoring during training when `eval.every_n_steps` asks for it. Bad input found on the way (data,
preflight, loading) is one line on stderr and exit code 2, like a config error.

Apps layer: it wires evaluation (llmexp/eval/) into the runtime's training run (llmexp/run.py),
so the runtime never reaches up into the evaluation code.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, NoReturn, Sequence

from llmexp.config.errors import ConfigError, fail
from llmexp.config.schema import Config
from llmexp.data.sources import DataError
from llmexp.outcomes import EXIT_CODES, RunStopped
from llmexp.plan import Plan
from llmexp.run import PreflightError, run


def run_config(cfg: Config, plan: Plan, argv: Sequence[str]) -> dict[str, Any]:
    """Evaluate (stage=eval) or train `cfg`; returns the run's summary."""
    if cfg.eval.tasks:  # validation leaves lm-eval unimported: its task index is checked here, before any work
        from llmexp.eval.harness import check_tasks

        check_tasks(cfg.eval.tasks)
    if cfg.stage.name == "eval":  # benchmarks on init_from, nothing to train
        from llmexp.eval.harness import run_eval

        return run_eval(cfg, plan, list(argv))
    if not cfg.eval.every_n_steps:
        return run(cfg, plan, list(argv))
    from llmexp.eval.harness import eval_callback  # lm-eval tasks during training

    def in_training_eval(run_dir: Path, tokenizer) -> list:
        return [eval_callback(cfg, run_dir, tokenizer)]
    return run(cfg, plan, list(argv), extra_callbacks=in_training_eval)


def environment_message(err: OSError) -> str:
    """One line for an OSError a run met: what failed and what to do (LLMEXP_DEBUG=1: the traceback)."""
    first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
    if isinstance(err, ConnectionError) or "connection" in type(err).__name__.lower() or "resolve" in first.lower():
        return (f"a download failed ({first}): this machine looks offline; use offline options "
                "(eval=smoke, tokenizer=bpe or cl100k_base, local data) or fill the caches (HF_HOME, TIKTOKEN_CACHE_DIR) first")
    where = f" {err.filename}" if getattr(err, "filename", None) else ""
    return f"cannot read or write{where}: {err.strerror or first}; check the path, its permissions and free disk space"


def execute(cfg: Config, plan: Plan, argv: Sequence[str]) -> dict[str, Any]:
    """`run_config` for the command line: user-caused failures exit 2 with one line."""
    try:
        return run_config(cfg, plan, argv)
    except (ConfigError, PreflightError, DataError) as err:
        fail(str(err))
    except RunStopped as stop:
        exit_stopped(stop)
    except OSError as err:  # the environment: a download offline, a full disk, a folder not writable
        if os.environ.get("LLMEXP_DEBUG"):
            raise
        fail(environment_message(err))
    except KeyboardInterrupt:
        print("llmexp: interrupted; rerun the same command to resume from the last checkpoint", file=sys.stderr)
        raise SystemExit(130)


def exit_stopped(stop: RunStopped) -> NoReturn:
    """A run that stopped early leaves the command line with one line and its own exit code
    (summary.json says the same)."""
    print(f"llmexp: {stop}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_CODES[stop.summary["status"]])
