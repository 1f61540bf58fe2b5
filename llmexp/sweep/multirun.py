"""A grid sweep file as one Hydra multirun command (`python -m llmexp -m ...`), for Hydra's
launchers (submitit for SLURM job arrays) when no W&B server or agent is wanted. Only grids
translate: random and Bayesian search need W&B's engine, and Hydra has no early termination."""
from __future__ import annotations

import shlex

from llmexp.sweep.compat import engine, plain
from llmexp.sweep.errors import SweepError
from llmexp.sweep.overrides import agent_argument, same
from llmexp.sweep.sweepfile import SweepFile


def grid_values(sweep: SweepFile) -> dict[str, list]:
    """Each parameter's values, in the order W&B's grid engine visits them."""
    sweeps = engine()
    runs, seen = [], {name: [] for name in sweep.parameters}
    while True:
        suggestion = sweeps.next_run(sweep.config, runs, validate=True)
        if suggestion is None:
            return seen
        for name, spec in suggestion.config.items():
            value = plain(spec["value"])
            if not any(same(value, v) for v in seen[name]):
                seen[name].append(value)
        suggestion.state = "finished"
        runs.append(suggestion)


def multirun_command(sweep: SweepFile, launcher: str = "submitit_slurm") -> str:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if sweep.method != "grid":
        raise SweepError(f"{sweep.path}: only a grid sweep is a Hydra multirun ({sweep.method} needs W&B's engine)")
    parser = OverridesParser.create()
    overrides = []
    for name, values in grid_values(sweep).items():
        texts = [agent_argument(name, v).split("=", 1)[1] for v in values]  # each as the agent writes it
        override = f"{name}={','.join(texts)}"
        parsed = parser.parse_override(override)
        got = parsed.value().list if parsed.is_sweep_override() else [parsed.value()]
        if len(got) != len(values) or not all(same(g, v) for g, v in zip(got, values)):
            # e.g. a string value holding a comma, which would split into two
            raise SweepError(f"{sweep.path}: parameters.{name}: values {values} read back as {got} in a Hydra sweep")
        overrides.append(override)
    return shlex.join(["python", "-m", "llmexp", "-m", *sweep.fixed_args(), *overrides, f"hydra/launcher={launcher}"])
