"""The compiler's front passes as a Python API: compose -> validate -> derive."""
from __future__ import annotations

import os
from typing import Iterable, Sequence

from llmexp.artifacts import PlannedRuns
from llmexp.config.compose import compose_dictconfig
from llmexp.config.schema import Config
from llmexp.config.validate import validate
from llmexp.plan import Plan
from llmexp.plan import derive as _derive


def compose(overrides: Sequence[str] = (), config_dirs: Iterable[str | os.PathLike] = (),
            planned_runs: PlannedRuns = {}) -> Config:
    """Compose conf/ with Hydra `overrides` and validate: a typed Config, or ConfigError.
    `planned_runs`: run folders that do not exist yet but will (a pipeline's earlier steps)."""
    return validate(compose_dictconfig(overrides, config_dirs), planned_runs)


def derive(cfg: Config) -> Plan:
    """The plan of a validated config: parameters, FLOPs, tokens, steps, memory, time."""
    return _derive(cfg)
