"""What an offline sweep leaves in its folder: summary.csv and summary.md (one row per run, best
first), plot.png (the metric against each parameter) and best.txt (the best finished run as a
command to paste)."""
from __future__ import annotations

import csv
import io
import math
import shlex
from pathlib import Path
from typing import Any, Optional

from llmexp.io import atomic_write_bytes, atomic_write_text
from llmexp.sweep.overrides import agent_argument
from llmexp.sweep.state import RunRecord, SweepState
from llmexp.sweep.sweepfile import SweepFile


def outcome(record: RunRecord) -> str:
    return "stopped" if record.stopped else record.state


def ranked(sweep: SweepFile, state: SweepState) -> list[RunRecord]:
    """Finished and stopped runs with a metric first, best first (finished before stopped at
    equal value); then failed and unfinished runs, in the order they ran."""
    sign = -1.0 if sweep.goal == "maximize" else 1.0

    def key(r: RunRecord) -> tuple:
        value = r.last(sweep.metric)
        usable = r.state in ("finished", "killed") and value is not None and math.isfinite(value)
        return (0 if usable else 1, sign * value if usable else 0.0, r.stopped, state.runs.index(r))

    return sorted(state.runs, key=key)


def rows(sweep: SweepFile, state: SweepState) -> list[dict[str, Any]]:
    out = []
    for r in ranked(sweep, state):
        steps = r.history[-1]["_step"] if r.history else None
        seconds = round(r.ended - r.started, 1) if r.started and r.ended else None
        note = r.stop_reason if r.stopped else (r.error or "")
        out.append({"run": r.id, "state": outcome(r), sweep.metric: r.last(sweep.metric), **r.params,
                    "last_step": steps, "seconds": seconds, "note": note})
    return out


def best_run(sweep: SweepFile, state: SweepState) -> Optional[RunRecord]:
    finished = [r for r in ranked(sweep, state) if r.state == "finished" and r.last(sweep.metric) is not None
                and math.isfinite(r.last(sweep.metric))]  # a NaN never wins (a diverged run also exits 3: failed)
    return finished[0] if finished else None


def best_command(sweep: SweepFile, record: RunRecord) -> str:
    """The best run as `python -m llmexp ...`: the sweep's fixed arguments and the run's
    parameters exactly as the agent passed them (the checks made sure Hydra reads them back)."""
    params = [agent_argument(k, v) for k, v in record.params.items()]
    return shlex.join(["python", "-m", "llmexp", *sweep.fixed_args(), *params])


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def markdown(table: list[dict[str, Any]]) -> str:
    if not table:
        return "(no runs)\n"
    header = list(table[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table:
        lines.append("| " + " | ".join(_fmt(row[h]).replace("|", "\\|") for h in header) + " |")
    return "\n".join(lines) + "\n"


def plot(sweep: SweepFile, state: SweepState, out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(sweep.parameters)
    fig, axes = plt.subplots(1, len(names), figsize=(max(6.4, 4.5 * len(names)), 4.0), squeeze=False)
    for ax, name in zip(axes[0], names):
        points = [(r.params.get(name), r.last(sweep.metric), r.stopped) for r in state.runs
                  if r.state in ("finished", "killed") and r.last(sweep.metric) is not None
                  and math.isfinite(r.last(sweep.metric))]
        numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x, _, _ in points)
        if numeric:
            xs = [x for x, _, _ in points]
            if xs and min(xs) > 0 and max(xs) / min(xs) >= 20:
                ax.set_xscale("log")
        else:  # categorical: one position per distinct value, in sweep order
            labels = list(dict.fromkeys(str(x) for x, _, _ in points))
            ax.set_xticks(range(len(labels)), labels, rotation=30)
            points = [(labels.index(str(x)), y, s) for x, y, s in points]
        for stopped, marker, label in ((False, "o", "finished"), (True, "x", "stopped early")):
            chosen = [(x, y) for x, y, s in points if s == stopped]
            if chosen:
                ax.scatter(*zip(*chosen), marker=marker, label=label)
        ax.set_xlabel(name)
        ax.set_ylabel(sweep.metric)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{sweep.name} ({sweep.method}, {len(state.runs)} runs): {sweep.metric}, {sweep.goal}", fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(out_png, buffer.getvalue())


def write_reports(sweep: SweepFile, state: SweepState, sweep_dir: Path) -> dict[str, Path]:
    table = rows(sweep, state)
    paths = {name: sweep_dir / name for name in ("summary.csv", "summary.md", "plot.png", "best.txt")}
    text = io.StringIO()
    header = list(dict.fromkeys(k for row in table for k in row))
    writer = csv.DictWriter(text, fieldnames=header)
    writer.writeheader()
    writer.writerows(table)
    atomic_write_text(paths["summary.csv"], text.getvalue())
    atomic_write_text(paths["summary.md"], f"# {sweep.name} ({sweep.method}, {sweep.metric} {sweep.goal})\n\n" + markdown(table))
    plot(sweep, state, paths["plot.png"])
    best = best_run(sweep, state)
    if best is None:
        atomic_write_text(paths["best.txt"], "# no run finished with a value of the metric\n")
    else:
        atomic_write_text(
            paths["best.txt"],
            f"# best of {len(state.runs)} runs by {sweep.metric} ({sweep.goal}): {best.last(sweep.metric):.6g}, "
            f"run {best.id} ({best.run_dir})\n{best_command(sweep, best)}\n",
        )
    return paths
