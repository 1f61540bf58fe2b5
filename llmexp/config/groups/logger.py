"""logger group: metrics always go to <run_dir>/metrics.csv; `name` adds a tracker."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Literal, Optional

from llmexp.config.checks import choice


@dataclass
class LoggerConfig:
    name: str = choice(Literal["csv", "wandb", "tensorboard"], "csv")
    project: str = "llmexp"
    entity: Optional[str] = None
    group: Optional[str] = None
    tags: List[str] = field(default_factory=list)
