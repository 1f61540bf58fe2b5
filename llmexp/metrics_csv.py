"""Reading a run's metrics.csv (docs/run-contract.md) without torch: the training callbacks,
the offline sweep engine and the scaling fits (approach 1 reads every run's curve) share it."""
from __future__ import annotations

import csv
from pathlib import Path


def read_metrics(path: Path) -> dict[str, list[tuple[int, float]]]:
    """metrics.csv -> {metric: [(step, value), ...]}, last value kept per step (a resumed run
    logs the steps after its checkpoint again)."""
    series: dict[str, dict[int, float]] = {}
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            step = int(float(row["step"]))
            for key, value in row.items():
                if key in ("step", "epoch") or value in ("", None):
                    continue
                series.setdefault(key, {})[step] = float(value)
    return {k: sorted(v.items()) for k, v in series.items()}
