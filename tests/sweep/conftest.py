"""Shared pieces of the sweep tests: sweep files written to tmp_path, a fast stand-in program for
engine tests, and a reader of what W&B recorded offline."""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, Iterator, Optional

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
# wandb 0.31 writes a run's .wandb file from its Go core and ships no Python reader. The file is
# LevelDB's log format: a 7-byte header (':W&B', 0xBEE1, version), then 32 KiB blocks of records,
# each with a 7-byte header (crc32, length, type FULL=1 FIRST=2 MIDDLE=3 LAST=4), holding
# wandb.proto.wandb_internal_pb2.Record messages.
_BLOCK = 32768


def _records(path: Path) -> Iterator[Any]:
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B" and struct.unpack("<H", data[4:6])[0] == 0xBEE1, f"{path}: not a W&B log"
    offset, pending = 7, b""
    while offset + 7 <= len(data):
        left = _BLOCK - offset % _BLOCK
        _crc, length, kind = struct.unpack("<IHB", data[offset:offset + 7])
        if left < 7 or kind == 0:  # a block's tail is padding
            offset += left
            continue
        chunk = data[offset + 7:offset + 7 + length]
        offset += 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            yield record


def wandb_offline_run(run_dir: Path) -> Optional[dict[str, Any]]:
    """What W&B recorded for the offline run under `run_dir` ({"run": id/project/group,
    "config": {...}, "history": [rows]}), or None."""
    logs = sorted(Path(run_dir).glob("**/offline-run-*/*.wandb"))
    if not logs:
        return None
    found: dict[str, Any] = {"run": {}, "config": {}, "history": []}
    for record in _records(logs[-1]):
        kind = record.WhichOneof("record_type")
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


@pytest.fixture
def composable(monkeypatch):
    """composable(sweep): run from the repository root, as an agent or the driver would, and skip
    llmexp's side of a sweep whose --config-dir folder is generated first (isoflop.yaml's study
    folder: `python -m llmexp.scaling isoflop ...` writes it)."""
    from llmexp.sweep.check import program_args_or_fail, split_program_args

    monkeypatch.chdir(REPO)

    def check(sweep) -> None:
        _, config_dirs = split_program_args(program_args_or_fail(sweep))
        generated = [d for d in config_dirs if not (REPO / d).is_dir()]
        if generated:
            pytest.skip(f"{sweep.path.name}: valid for W&B; llmexp's side needs --config-dir {generated[0]}, "
                        "which the command in the file's header generates")

    return check
