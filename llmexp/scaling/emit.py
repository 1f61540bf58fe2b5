"""A study as something that launches its runs: a W&B grid sweep, a Hydra multirun script,
and a plain list of commands. All three select a run by `model=<run id>` with the study's
config folder, so each run's N and D stay together (see study.py)."""
from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from llmexp.scaling.study import Study

SWEEP_FILE, MULTIRUN_FILE, COMMANDS_FILE = "sweep.yaml", "multirun.sh", "commands.txt"


def _summary(study: Study) -> str:
    budgets = sorted({r.budget for r in study.runs if r.budget})
    return (f"IsoFLOP study {study.spec.name!r}: {len(study.runs)} runs over {len(budgets)} budgets "
            f"({', '.join(f'{c:.3g}' for c in budgets)} FLOPs); written by python -m llmexp.scaling isoflop.")


def sweep(study: Study) -> dict:
    """W&B's own sweep format: a grid over one categorical parameter whose values are the run
    ids, because a grid over N and D as separate parameters would cross every size with every
    token count. Study-wide overrides (the run folder among them) are constant parameters."""
    params = {"model": {"values": [r.id for r in study.runs]}}
    for override in study.overrides:
        key, value = override.split("=", 1)
        params[key] = {"value": yaml.safe_load(value) if value else value}
    return {
        "name": f"isoflop-{study.spec.name}",
        "method": "grid",
        "metric": {"name": "val/loss", "goal": "minimize"},
        "command": ["${env}", "python", "-m", "llmexp", "--config-dir", str(study.conf_dir), "logger=wandb",
                    "${args_no_hyphens}"],
        "parameters": params,
    }


def sweep_yaml(study: Study) -> str:
    header = (f"# {_summary(study)}\n"
              "# Each value of `model` is one whole run: its shape is conf/model/<id>.yaml and its budget,\n"
              "# batch, learning rate and run folder conf/recipe/<id>.yaml in the study folder.\n"
              "#   online:  wandb sweep <this file>   then   wandb agent <entity/project/sweep-id>\n"
              "#   offline: python -m llmexp.sweep <this file>\n")
    # Block lists throughout: W&B's macros (${env}, ${args_no_hyphens}) cannot sit in a [..] flow list unquoted.
    return header + yaml.safe_dump(sweep(study), sort_keys=False, default_flow_style=False, width=1000)


def multirun_script(study: Study) -> str:
    """Hydra's multirun over the run ids: the basic launcher runs them one after another;
    hydra/launcher=joblib or submitit_slurm runs them in parallel or on a cluster."""
    ids = ",".join(r.id for r in study.runs)
    args = ["python", "-m", "llmexp", "-m", "--config-dir", str(study.conf_dir), f"model={ids}", *study.overrides]
    return (f"#!/usr/bin/env bash\n# {_summary(study)}\n# Extra arguments go to Hydra, e.g. hydra/launcher=submitit_slurm.\n"
            f"set -euo pipefail\n{' '.join(shlex.quote(a) for a in args)} \"$@\"\n")


def commands(study: Study) -> str:
    lines = [f"# {_summary(study)}", "# One run per line; any order; a finished run need not be repeated."]
    lines += [" ".join(shlex.quote(a) for a in study.command(r)) for r in study.runs]
    return "\n".join(lines) + "\n"


def write_launchers(study: Study) -> dict[str, Path]:
    """All three; a study with cooldown chains only the commands (each link resumes the one before
    it by its own `resume=`, which one sweep parameter cannot carry)."""
    out = {}
    chained = any(r.after for r in study.runs)
    launchers = ([] if chained else [(SWEEP_FILE, sweep_yaml(study)), (MULTIRUN_FILE, multirun_script(study))])
    for name, text in launchers + [(COMMANDS_FILE, commands(study))]:
        path = study.root / name
        path.write_text(text)
        out[name] = path
    if not chained:
        (study.root / MULTIRUN_FILE).chmod(0o755)
    return out
