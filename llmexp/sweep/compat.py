"""W&B's sweep engine (the `sweeps` package, 0.2.0) as used under pydantic 2 and numpy 2.

sweeps declares `SweepRun` with a pydantic-1 `class Config: allow_population_by_field_name`,
which pydantic 2 renames (to `validate_by_name`) and does not apply: `SweepRun(history=...)`
silently drops the value, so the early-termination and Bayesian code would see empty runs.
Only the aliases (`sampledHistory`, `summaryMetrics`) populate those fields, so every
SweepRun llmexp hands to the engine is built here, by alias. The same pydantic-1 config makes
the import warn; those warnings are about sweeps' own code, so they are silenced here only.
"""
from __future__ import annotations

import warnings
from types import ModuleType
from typing import Any, Mapping, Sequence


def engine() -> ModuleType:
    """`import sweeps`, without its pydantic-2 deprecation warnings."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*class-based `config` is deprecated.*")
        warnings.filterwarnings("ignore", message=r"Valid config keys have changed in V2.*")
        import sweeps
    return sweeps


def sweep_run(
    name: str, state: str, params: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]] = (), summary: Mapping[str, Any] | None = None,
) -> Any:
    """A `sweeps.SweepRun` as W&B's server would describe the run (config values wrapped in
    {"value": ...}, history as logged rows, summary as the last logged values)."""
    return engine().SweepRun(
        name=name,
        state=state,
        config={key: {"value": value} for key, value in params.items()},
        sampledHistory=[dict(row) for row in history],
        summaryMetrics=dict(summary or {}),
    )


def plain(value: Any) -> Any:
    """numpy scalars/arrays in the engine's suggestions -> plain Python (JSON, str(), Hydra)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy scalar or array
        return plain(value.tolist())
    return value
