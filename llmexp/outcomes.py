"""How a training run can end early, as exceptions the run pass turns into summary.json's
`status` (and the command line into exit codes, llmexp/execute.py). No heavy imports: the
command line imports this before any training starts."""
from __future__ import annotations

from pathlib import Path
from typing import Any

# Exit codes of a training command (docs/run-contract.md): 0 finished, 2 bad input (one line),
# 3 diverged (a non-finite loss or gradient norm), 143 stopped by SIGTERM/SIGUSR1/SIGUSR2 after
# saving a checkpoint (128 + SIGTERM, what shells and schedulers read as "terminated").
EXIT_CODES = {"diverged": 3, "preempted": 143}


class Diverged(RuntimeError):
    """A non-finite loss or gradient norm: the run stops at that optimizer step."""

    def __init__(self, step: int, metric: str, value: float):
        super().__init__(f"{metric} is {value} at step {step}")
        self.step, self.metric, self.value = step, metric, value


class Preempted(RuntimeError):
    """SIGTERM, SIGUSR1 or SIGUSR2 arrived; the run saved a checkpoint at `step` and stops."""

    def __init__(self, signal_name: str, step: int, checkpoint: Path):
        super().__init__(f"{signal_name} received: saved {checkpoint} at step {step}")
        self.signal_name, self.step, self.checkpoint = signal_name, step, checkpoint


class RunStopped(RuntimeError):
    """The run stopped before its end: `summary["status"]` is "diverged" (a non-finite loss or
    gradient norm) or "preempted" (SIGTERM/SIGUSR1/SIGUSR2, a checkpoint saved); str() is one line."""

    def __init__(self, summary: dict[str, Any]):
        super().__init__(summary["message"])
        self.summary = summary
