"""The offline driver's memory: `<sweep_dir>/state.json`, rewritten atomically after every change,
so a driver killed at any moment is continued by running the same command again."""
from __future__ import annotations

import json
import secrets
import string
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from llmexp.io import atomic_write_text
from llmexp.sweep.compat import sweep_run
from llmexp.sweep.errors import SweepError

VERSION = 1
# States are the engine's own RunState names: pending, running, finished, failed, killed.
ACTIVE = ("pending", "running")  # a driver that stopped with runs like these starts them again


@dataclass
class RunRecord:
    id: str
    params: dict[str, Any]
    run_dir: str
    state: str = "pending"
    stopped: bool = False  # killed because early termination said so
    stop_reason: Optional[str] = None
    exit_code: Optional[int] = None
    error: Optional[str] = None
    pid: Optional[int] = None
    history: list[dict[str, Any]] = field(default_factory=list)  # {"_step", <metric>} per validation
    summary: dict[str, Any] = field(default_factory=dict)  # the run's summary.json
    started: Optional[float] = None
    ended: Optional[float] = None
    attempts: int = 0

    def last(self, metric: str) -> Optional[float]:
        """The metric's last logged value: what W&B's run summary holds and the sweep ranks by."""
        values = [row[metric] for row in self.history if metric in row]
        return values[-1] if values else None

    def engine_run(self) -> Any:
        summary = {}
        for row in self.history:
            summary.update({k: v for k, v in row.items() if not k.startswith("_")})
        return sweep_run(self.id, self.state, self.params, self.history, summary)


@dataclass
class SweepState:
    sweep_id: str
    sweep_file: str
    config: dict[str, Any]
    seed: int = 0
    runs: list[RunRecord] = field(default_factory=list)
    version: int = VERSION

    @staticmethod
    def new(sweep_file: Path, config: dict[str, Any], seed: int) -> "SweepState":
        # W&B run ids are [a-z0-9]; a random sweep id keeps offline runs of two sweeps apart
        alphabet = string.ascii_lowercase + string.digits
        sweep_id = "".join(secrets.choice(alphabet) for _ in range(8))
        return SweepState(sweep_id=sweep_id, sweep_file=str(sweep_file), config=config, seed=seed)

    def add_run(self, params: dict[str, Any], sweep_dir: Path) -> RunRecord:
        run_id = f"{self.sweep_id}-{len(self.runs):03d}"
        record = RunRecord(id=run_id, params=params, run_dir=str((sweep_dir / "runs" / run_id).resolve()))
        self.runs.append(record)
        return record

    def engine_runs(self) -> list[Any]:
        return [r.engine_run() for r in self.runs]

    def save(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(asdict(self), indent=1, default=str) + "\n")

    @staticmethod
    def load(path: Path) -> Optional["SweepState"]:
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        if data.get("version") != VERSION:
            raise SweepError(f"{path}: written by another version of llmexp's sweep driver; use a new --dir")
        runs = [RunRecord(**r) for r in data.pop("runs")]
        return SweepState(**data, runs=runs)

