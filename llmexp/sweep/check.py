"""Check a sweep against llmexp before any run starts: the program is llmexp, the metric is one
llmexp logs, and every parameter value the sweep can suggest composes, validates and plans.

Each check is `llmexp.compose` + `llmexp.derive` on the exact overrides the W&B agent would pass
(~0.2 s each, no torch). A grid is checked whole; for random and Bayesian sweeps each parameter
contributes its listed values, or for a distribution values at its two ends, and every
combination of those is checked (one parameter at a time when there are too many).
"""
from __future__ import annotations

import itertools
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from llmexp.sweep.compat import engine, plain
from llmexp.sweep.errors import SweepError
from llmexp.sweep.overrides import agent_argument, hydra_value, misread
from llmexp.sweep.sweepfile import SweepFile

# The metric names every run logs (docs/run-contract.md): the only ones a sweep can optimise.
LOGGED_METRICS = ("val/loss", "train/loss", "lr", "throughput/tokens_per_s")
MAX_COMBINATIONS = 64  # beyond this, values are checked one parameter at a time
QUANTILES = (1e-3, 1 - 1e-3)  # where a distribution's "ends" are probed (normal ones have none)

Composer = Callable[[Sequence[str], Sequence[str]], Any]  # (overrides, config dirs) -> Config


@dataclass
class CheckReport:
    combinations: int = 0
    exhaustive: bool = True
    notes: list[str] = field(default_factory=list)


def llmexp_config(overrides: Sequence[str], config_dirs: Sequence[str] = ()) -> Any:
    """Compose, validate and derive (the front passes of `python -m llmexp`, no training)."""
    import llmexp

    cfg = llmexp.compose(list(overrides), list(config_dirs))
    llmexp.derive(cfg)
    return cfg


def split_program_args(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """llmexp's command-line arguments -> (overrides, --config-dir folders). Other options make
    no sense in a sweep (-m would start a multirun per run, --cfg would train nothing)."""
    overrides, dirs = [], []
    items = list(args)
    while items:
        item = items.pop(0)
        if item in ("--config-dir", "-cd"):
            if not items:
                raise SweepError(f"command: {item} needs a folder")
            dirs.append(items.pop(0))
        elif item.startswith("--config-dir="):
            dirs.append(item.split("=", 1)[1])
        elif item.startswith("-"):
            raise SweepError(f"command: option {item!r} does not belong in a sweep's command (only --config-dir)")
        else:
            overrides.append(item)
    return overrides, dirs


def candidates(name: str, spec: dict[str, Any]) -> list[Any]:
    """The values of one parameter that checking covers."""
    if "values" in spec:
        return [plain(v) for v in spec["values"]]
    if "value" in spec:
        return [plain(spec["value"])]
    engine()  # imported quietly first
    from sweeps.params import HyperParameter  # the engine's own distributions

    param = HyperParameter(name, spec)
    return list(dict.fromkeys(plain(param.ppf(q)) for q in QUANTILES))


def check_values(sweep: SweepFile) -> None:
    """Every value must reach Hydra as the sweep means it (see overrides.py)."""
    for name, spec in sweep.parameters.items():
        for value in candidates(name, spec):
            problem = misread(name, value)
            if problem:
                try:
                    fix = f"write the value as the string {hydra_value(value)!r} (Hydra override text)"
                except SweepError:
                    fix = "this value cannot be passed as a Hydra override"
                raise SweepError(f"{sweep.path}: parameters.{name}: value {value!r}: {problem}; {fix}")


def check_sweep(
    sweep: SweepFile, compose: Composer = llmexp_config, max_combinations: int = MAX_COMBINATIONS
) -> CheckReport:
    """Raise SweepError for the first problem; otherwise say what was covered."""
    report = CheckReport()
    check_envvars(sweep)
    args = program_args_or_fail(sweep)
    fixed, config_dirs = split_program_args(args)
    missing = [d for d in config_dirs if not Path(d).expanduser().is_dir()]
    if missing:  # Hydra would only warn, then fail on whatever the folder should have held
        raise SweepError(f"{sweep.path}: command: --config-dir {missing[0]} does not exist (relative to {Path.cwd()})")
    if sweep.metric not in LOGGED_METRICS:
        raise SweepError(
            f"{sweep.path}: metric.name={sweep.metric!r}: llmexp never logs it; allowed: {', '.join(LOGGED_METRICS)}"
        )
    fixed_keys = {o.lstrip("+~").split("=", 1)[0] for o in fixed}
    for name in sweep.parameters:
        if name in fixed_keys:
            raise SweepError(f"{sweep.path}: parameters.{name} is also fixed in command: keep one of them")
    check_values(sweep)

    names = list(sweep.parameters)
    values = [candidates(n, sweep.parameters[n]) for n in names]
    total = 1
    for v in values:
        total *= len(v)
    if sweep.method == "grid" or total <= max_combinations:
        combos = [dict(zip(names, combo)) for combo in itertools.product(*values)]
    else:  # one parameter at a time, the others at their first value
        report.exhaustive = False
        report.notes.append(f"{total} combinations: each parameter's values checked with the others at their first")
        base = {n: v[0] for n, v in zip(names, values)}
        combos = [dict(base, **{n: x}) for n, v in zip(names, values) for x in v]
    for params in combos:
        check_run(sweep, params, fixed, config_dirs, compose)
    report.combinations = len(combos)

    first = compose(fixed + [agent_argument(n, v[0]) for n, v in zip(names, values)], config_dirs)
    if first.logger.name != "wandb":  # under `wandb agent` the sweep would see no metric at all
        raise SweepError(f"{sweep.path}: command: runs log with logger={first.logger.name}; add logger=wandb")
    return report


def check_envvars(sweep: SweepFile) -> None:
    """`${envvar:NAME}` in a command is filled from the agent's environment (wandb leaves the bare
    NAME when it is unset): here it must be set too, or the checks would test the wrong command."""
    import os

    from wandb.sdk.launch.sweeps.utils import SWEEP_COMMAND_ENV_VAR_REGEX

    for item in sweep.command:
        for match in SWEEP_COMMAND_ENV_VAR_REGEX.finditer(str(item)):
            if match.group(1) not in os.environ:
                raise SweepError(f"{sweep.path}: command: {item} needs the environment variable {match.group(1)} "
                                 "(the W&B agent takes it from its own environment)")


def program_args_or_fail(sweep: SweepFile) -> list[str]:
    from llmexp.sweep.command import expand, program_args

    args = program_args(expand(sweep.command, {}, sweep.program))
    if args is None:
        raise SweepError(f"{sweep.path}: command: does not run llmexp (expected `${{interpreter}} -m llmexp ...`)")
    return args


def check_run(
    sweep: SweepFile, params: dict[str, Any], fixed: Sequence[str], config_dirs: Sequence[str],
    compose: Composer = llmexp_config,
) -> Optional[Any]:
    """Compose the exact overrides one run gets; SweepError naming the parameters if invalid."""
    from llmexp.config.errors import ConfigError

    overrides = list(fixed) + [agent_argument(n, v) for n, v in params.items()]
    try:
        return compose(overrides, config_dirs)
    except ConfigError as err:
        shown = " ".join(agent_argument(n, v) for n, v in params.items())
        raise SweepError(f"{sweep.path}: the run with {shown} is invalid: {err}") from None
