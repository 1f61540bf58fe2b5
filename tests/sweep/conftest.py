"""Shared pieces of the sweep tests: sweep files written to tmp_path, a fast stand-in program for
engine tests, and a reader of what W&B recorded offline."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

# A stand-in for `python -m llmexp` where the engine, not training, is under test: it reads the
# overrides with Hydra's parser, logs `val/loss` to metrics.csv one validation at a time and
# writes summary.json, as a run does (docs/run-contract.md); rerun in the same run_dir it
# continues after the last row, as a run resumes from its checkpoint.
FAKE_PROGRAM = '''
import json, sys, time
from pathlib import Path
from llmexp.sweep.overrides import parse

args = {a.split("=", 1)[0]: parse(a) for a in sys.argv[1:]}
run_dir = Path(args.pop("run_dir"))
run_dir.mkdir(parents=True, exist_ok=True)
with open(run_dir / "invocations", "a") as f:
    f.write(json.dumps(args) + "\\n")
if args.get("fail"):
    print("planted failure", file=sys.stderr)
    sys.exit(3)
x, steps, delay = float(args.get("x", 1.0)), int(args.get("steps", 6)), float(args.get("delay", 0.05))
loss = lambda s: (x - 1.0) ** 2 + 1.0 + 2.0 / (s + 1) + (float("nan") if args.get("nan") and s > 1 else 0.0)
path = run_dir / "metrics.csv"
done = max(0, len(path.read_text().splitlines()) - 1) if path.exists() else 0
with path.open("a") as f:
    if not done:
        f.write("step,val/loss\\n")
    for s in range(done, steps):
        f.write(f"{s},{loss(s)}\\n")
        f.flush()
        time.sleep(delay)
if args.get("nan"):  # as llmexp ends a run whose loss turned non-finite
    (run_dir / "summary.json").write_text(json.dumps({"status": "diverged", "steps": 2}))
    sys.exit(3)
(run_dir / "summary.json").write_text(json.dumps({"status": "finished", "val_loss": loss(steps - 1)}))
'''


def write_sweep(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture
def fake_sweep(tmp_path: Path):
    """fake_sweep(method, parameters, **extra) -> a sweep file running the stand-in program."""
    program = tmp_path / "fake_program.py"
    program.write_text(FAKE_PROGRAM)

    def make(method: str, parameters: dict[str, Any], name: str = "fake", **extra: Any) -> Path:
        config = {
            "name": name, "program": str(program), "method": method,
            "metric": {"name": "val/loss", "goal": "minimize"}, "parameters": parameters,
            "command": ["${env}", "${interpreter}", "${program}", "${args_no_hyphens}"], **extra,
        }
        return write_sweep(tmp_path / f"{name}.yaml", config)

    return make


# --- what W&B received ------------------------------------------------------------------------
# W&B has no public reader of an offline run (wandb 0.31 writes only the `.wandb` transaction
# log offline); llmexp.tracking.wandb_records reads it. The run's folder is found by W&B's
# documented naming, `<offline-run|run>-<YYYYMMDD_HHMMSS>-<run id>` (`wandb sync --help`).
def wandb_offline_run(run_dir: Path, run_id: str) -> dict[str, Any]:
    """What W&B recorded offline for run `run_id` under `run_dir`: {"run": id/project/group,
    "config": {...}, "history": [rows]}. The run must have been one session that W&B closed
    (its stream ends with the exit record W&B writes when the run finishes)."""
    folders = sorted(Path(run_dir).glob(f"wandb/offline-run-*-{run_id}"))
    assert len(folders) == 1, f"one offline W&B run {run_id} expected in {run_dir}, found {[f.name for f in folders]}"
    from llmexp.tracking import wandb_records  # lazily: it imports Lightning

    records = list(wandb_records(folders[0] / f"run-{run_id}.wandb"))
    kinds = [r.WhichOneof("record_type") for r in records]
    assert kinds and kinds[-1] == "exit", f"W&B has not finished writing run {run_id}: {kinds[-3:]}"
    found: dict[str, Any] = {"run": {}, "config": {}, "history": []}
    for kind, record in zip(kinds, records):
        if kind == "run":
            found["run"] = {"id": record.run.run_id, "project": record.run.project, "group": record.run.run_group}
        items = record.run.config.update if kind == "run" else record.config.update if kind == "config" else ()
        for item in items:
            found["config"][item.key or ".".join(item.nested_key)] = json.loads(item.value_json)
        if kind == "history":
            found["history"].append(
                {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in record.history.item})
    return found


@pytest.fixture
def read_wandb_run():
    return wandb_offline_run


@pytest.fixture
def sweep_file(tmp_path: Path):
    """sweep_file(config, name) -> the config written as a sweep YAML in tmp_path."""
    return lambda config, name="sweep": write_sweep(tmp_path / f"{name}.yaml", config)


@pytest.fixture
def sft_base(tmp_path: Path, monkeypatch) -> Path:
    """SFT_INIT_FROM for sweeps/lora_rank_sft.yaml: a pretraining run folder as validation sees it
    (config.yaml and a checkpoint file, never loaded), as tests/stages builds one."""
    import llmexp
    from llmexp.rundir import config_dict

    folder = tmp_path / "base"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "last.ckpt").write_bytes(b"")
    (folder / "config.yaml").write_text(yaml.safe_dump(config_dict(llmexp.compose(["model=tiny"]))))
    monkeypatch.setenv("SFT_INIT_FROM", str(folder))
    return folder


# --- a shipped sweep file where a user of a fresh clone runs it -------------------------------
def header_commands(path: Path) -> list[str]:
    """The shell lines of a sweep file's header that generate what it needs: `#   $ <line>`."""
    return [line.split("$", 1)[1][1:] for line in path.read_text().splitlines() if line.startswith("#   $")]


@pytest.fixture(scope="session")
def generated_for(tmp_path_factory):
    """generated_for(sweep file) -> (a new folder holding only what the file's header commands
    generate there, the environment variables they export); each file's commands run once."""
    made: dict[Path, tuple[Path, dict[str, str]]] = {}
    python = tmp_path_factory.mktemp("bin") / "python"  # the header's `python`: this interpreter
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')  # (a symlink would lose its venv)
    python.chmod(0o755)

    def make(path: Path) -> tuple[Path, dict[str, str]]:
        if path not in made:
            folder, exported = tmp_path_factory.mktemp(path.stem), tmp_path_factory.mktemp("env") / "env"
            script = "\n".join([*header_commands(path), f"env -0 > {exported}"])
            env = {**os.environ, "PATH": f"{python.parent}{os.pathsep}{os.environ['PATH']}"}
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=folder, env=env,
                                  capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, f"{path.name}'s header commands failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
            variables = dict(item.split("=", 1) for item in exported.read_text().split("\0") if "=" in item)
            made[path] = folder, {k: v for k, v in variables.items() if k not in os.environ}
        return made[path]

    return make


@pytest.fixture
def fresh_folder(generated_for, monkeypatch):
    """fresh_folder(sweep file) -> the folder the test now works in, as a user of a fresh clone
    would: a new one holding only what the file's header generates, with what its header exports."""
    def enter(path: Path) -> Path:
        folder, exported = generated_for(path)
        monkeypatch.chdir(folder)
        for name, value in exported.items():
            monkeypatch.setenv(name, value)
        return folder

    return enter
