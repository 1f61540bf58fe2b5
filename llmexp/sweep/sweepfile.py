"""A W&B sweep YAML, loaded as `wandb sweep` loads it and validated against W&B's own schema.

Validation is W&B's: `sweeps.schema_violations_from_proposed_config` (what `wandb sweep
--controller` runs) and `sweeps.SweepConfig` (what fills the defaults the engine relies on).
On top, the rules that make a file usable with a program that takes Hydra overrides: a
block-list `command:` passing the parameters with `${args_no_hyphens}`, flat dotted parameter
names, and a metric to optimise. Whether the parameters exist in llmexp is `check.py`'s job.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from llmexp.sweep.command import ARGS_MACRO, OTHER_ARG_MACROS, expand, program_args
from llmexp.sweep.compat import engine
from llmexp.sweep.errors import SweepError


# Parameter fields W&B wants as numbers. YAML 1.1 (PyYAML, and so `wandb sweep`) reads 1e-4,
# without a dot, as a string, and sweeps then fails comparing it; say so plainly instead.
NUMERIC_KEYS = ("min", "max", "mu", "sigma", "q", "a", "b")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclass
class SweepFile:
    path: Path
    config: dict[str, Any]  # as written: what `wandb sweep` uploads and the engine is given

    @property
    def name(self) -> str:
        return str(self.config.get("name") or self.path.stem)

    @property
    def method(self) -> str:
        return self.config["method"]

    @property
    def parameters(self) -> dict[str, dict[str, Any]]:
        return self.config["parameters"]

    @property
    def metric(self) -> str:
        return self.config["metric"]["name"]

    @property
    def goal(self) -> str:
        return self.config["metric"].get("goal", "minimize")

    @property
    def early_terminate(self) -> Optional[dict[str, Any]]:
        return self.config.get("early_terminate")

    @property
    def command(self) -> list[Any]:
        return self.config["command"]

    @property
    def program(self) -> Optional[str]:
        return self.config.get("program")

    def fixed_args(self) -> list[str]:
        """What every run gets after `-m llmexp` besides the parameters (overrides, --config-dir)."""
        args = program_args(expand(self.command, {}, self.program))
        return [] if args is None else args


@dataclass
class _Problems:
    path: Path
    found: list[str] = field(default_factory=list)

    def require(self, ok: bool, message: str) -> None:
        if not ok:
            self.found.append(message)

    def raise_if_any(self, what: str) -> None:
        if self.found:
            raise SweepError(f"{self.path}: {what}: " + "; ".join(self.found))


def load_sweep(path: str | Path) -> SweepFile:
    """Read and validate a sweep YAML; SweepError (one line) naming every problem found."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, ValueError) as err:  # ValueError: a path with a NUL byte
        raise SweepError(f"{path}: cannot read the sweep file ({getattr(err, 'strerror', None) or err})") from None
    try:
        config = yaml.safe_load(text)  # as wandb's load_sweep_config reads it
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        hint = " (a [..] flow list cannot hold ${...} macros: write command: as a block list)" if "${" in text else ""
        raise SweepError(f"{path}: not YAML: {getattr(err, 'problem', None) or err}{where}{hint}") from None
    if not isinstance(config, dict):
        raise SweepError(f"{path}: a sweep file is a YAML mapping (method, metric, parameters, command)")
    validate_wandb(path, config)
    validate_structure(path, config)
    return SweepFile(path=path, config=config)


def validate_wandb(path: Path, config: dict[str, Any]) -> None:
    """W&B's sweep schema, then the defaults-filling pass the engine itself runs."""
    sweeps = engine()
    problems = _Problems(path)
    for name, spec in (config.get("parameters") or {}).items():
        for key in NUMERIC_KEYS:
            value = spec.get(key) if isinstance(spec, dict) else None
            problems.require(
                not (isinstance(value, str) and _is_number(value)),
                f"parameters.{name}.{key}: YAML reads {value} as a string; write a number YAML knows, e.g. "
                f"{float(value)!r}" if isinstance(value, str) and _is_number(value) else "",
            )
    problems.raise_if_any("not a valid W&B sweep")
    try:
        problems.found += [v.replace("\n", " ") for v in sweeps.schema_violations_from_proposed_config(config)]
    except (ValueError, TypeError) as err:  # sweeps raises these for malformed parameters
        problems.found.append(str(err))
    problems.raise_if_any("not a valid W&B sweep")
    try:
        sweeps.SweepConfig(config)
    except Exception as err:  # jsonschema.ValidationError for parameters no distribution accepts
        raise SweepError(f"{path}: not a valid W&B sweep: {str(err).splitlines()[0]}") from None


def validate_structure(path: Path, config: dict[str, Any]) -> None:
    problems = _Problems(path)
    metric = config.get("metric")
    problems.require(
        isinstance(metric, dict) and bool(metric.get("name")),
        "metric: name the metric the sweep optimises (e.g. metric: {name: val/loss, goal: minimize})",
    )
    for name, spec in config["parameters"].items():
        problems.require(
            "parameters" not in spec,
            f"parameters.{name}: nested parameters reach the program as one dict; use flat dotted names "
            f"({name}.<key>: ...)",
        )
    command = config.get("command")
    if not isinstance(command, list) or not command:
        problems.require(False, f"command: a block list is required, e.g. [${{env}}, ${{interpreter}}, -m, llmexp, {ARGS_MACRO}]")
    else:
        items = [str(c) for c in command]
        problems.require(
            items.count(ARGS_MACRO) == 1,
            f"command: pass the parameters once as Hydra overrides with {ARGS_MACRO} (found {items.count(ARGS_MACRO)})",
        )
        for macro in OTHER_ARG_MACROS:
            problems.require(macro not in items, f"command: {macro} does not give Hydra overrides; use {ARGS_MACRO}")
        problems.require(
            "${program}" not in items or bool(config.get("program")),
            "command: uses ${program} but the file sets no program",
        )
    problems.raise_if_any("not usable as a Hydra sweep")
