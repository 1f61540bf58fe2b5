"""Where a run's metrics go: metrics.csv always, plus W&B (offline without a key) or
TensorBoard as `logger.name` says. Runtime layer: training and evaluation both log here.

One W&B run per run folder: every attempt (the first run, each rerun after a kill or a
preemption) continues the W&B run whose id the run folder keeps (`wandb/run_id`), with
`resume="allow"` and the run folder as W&B's `dir`. W&B itself makes a new transaction-log
folder per process (`wandb/offline-run-<time>-<id>[-N]`; wandb_init.py's set_sync_dir_suffix),
so each attempt logs only the (step, metric) pairs no earlier attempt's log holds: first the
metrics.csv rows an earlier attempt logged but W&B lost (a kill drops its unflushed records),
then its own steps, leaving out those the killed attempt already logged after the checkpoint
it resumes from (an exact resume logs the same values). Read in order, the folders hold
metrics.csv's rows once each, steps ascending (docs/run-contract.md)."""
from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from llmexp.callbacks import RunCSVLogger
from llmexp.config.schema import Config
from llmexp.io import atomic_write_text

# Keys every W&B history row carries besides the run's metrics.
BOOKKEEPING = {"epoch", "trainer/global_step", "_step", "_runtime", "_timestamp"}


def wandb_online() -> bool:
    """Online only with an API key (environment or `wandb login`'s netrc entry)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        import netrc

        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def build_loggers(cfg: Config, run_dir: Path, flat_config: dict[str, Any]) -> list:
    loggers: list = [RunCSVLogger(run_dir)]  # <run_dir>/metrics.csv, always
    if cfg.logger.name == "wandb":
        online = wandb_online()
        if not online:
            os.environ.setdefault("WANDB_MODE", "offline")
        loggers.append(
            RunWandbLogger(
                loggers[0], project=cfg.logger.project, entity=cfg.logger.entity, group=cfg.logger.group,
                tags=list(cfg.logger.tags), name=run_dir.name, id=wandb_run_id(run_dir),
                save_dir=str(run_dir), offline=not online, resume="allow",
            )
        )
    elif cfg.logger.name == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version=""))
    return loggers


class RunWandbLogger(WandbLogger):
    """Lightning's WandbLogger, continued across the attempts of one run folder: W&B's step is
    the optimizer step, and only (step, metric) pairs no earlier attempt's transaction log holds
    are sent, after the metrics.csv rows W&B lost (see the module's docstring)."""

    def __init__(self, metrics: RunCSVLogger, **kwargs: Any):
        super().__init__(**kwargs)
        self.metrics = metrics
        # (step, metric) pairs W&B holds: earlier attempts' logs, read when this process first
        # logs, then what this process sent.
        self._logged: Optional[set[tuple[int, str]]] = None

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: Optional[int] = None) -> None:
        if step is None:
            return super().log_metrics(metrics, step)
        if self._logged is None:
            self._logged = {(s, key) for s, row in wandb_history(Path(self.save_dir), self._id) for key in row}
            last = max((s for s, _ in self._logged), default=-1)
            for row in self.metrics.rows():  # rows an earlier attempt logged and W&B lost, up to this step
                if last < row["step"] <= step:
                    self._send(int(row["step"]), {k: v for k, v in row.items() if k != "step"})
        self._send(step, dict(metrics))

    def _send(self, step: int, metrics: dict[str, float]) -> None:
        fresh = {k: v for k, v in metrics.items() if k not in BOOKKEEPING and (step, k) not in self._logged}
        if fresh:
            self._logged.update((step, k) for k in fresh)
            kept = {k: v for k, v in metrics.items() if k in BOOKKEEPING}  # Lightning's epoch
            self.experiment.log({**kept, **fresh, "trainer/global_step": step}, step=step)


def wandb_run_id(run_dir: Path) -> str:
    """A W&B sweep agent assigns the id (WANDB_RUN_ID); otherwise the id the run folder keeps in
    wandb/run_id, made on its first run from the folder's name and absolute path, so every
    attempt (also after the folder moved) continues one W&B run and two folders of the same
    name never share one."""
    if os.environ.get("WANDB_RUN_ID"):
        return os.environ["WANDB_RUN_ID"]
    kept = run_dir / "wandb" / "run_id"
    if kept.is_file():
        return kept.read_text().strip()
    digest = hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:8]
    run_id = f"{run_dir.name[:48]}-{digest}"
    kept.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(kept, run_id + "\n")
    return run_id


def wandb_attempts(run_dir: Path, run_id: str) -> list[Path]:
    """The transaction logs of W&B run `run_id` under `run_dir`, oldest first: W&B names each
    process's folder `<offline-run|run>-<YYYYMMDD_HHMMSS>-<id>`, with `-<N>` added when that
    name exists already (wandb_settings.py's sync_dir)."""
    name = re.compile(rf"(?:offline-)?run-(\d{{8}}_\d{{6}})-{re.escape(run_id)}(?:-(\d+))?")
    found = []
    for folder in (run_dir / "wandb").glob(f"*run-*-{run_id}*"):
        match = name.fullmatch(folder.name)
        log = folder / f"run-{run_id}.wandb"
        if match and log.is_file():
            found.append(((match[1], int(match[2] or 0)), log))
    return [log for _, log in sorted(found)]


def wandb_history(run_dir: Path, run_id: str) -> list[tuple[int, dict[str, Any]]]:
    """(optimizer step, {metric: value}) for each history row of W&B run `run_id` in its
    transaction logs under `run_dir`, attempt after attempt, as `wandb sync` uploads them."""
    rows = []
    for log in wandb_attempts(run_dir, run_id):
        for record in wandb_records(log):
            if record.WhichOneof("record_type") == "history":
                row = {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in record.history.item}
                if "trainer/global_step" in row:
                    rows.append((int(row["trainer/global_step"]), {k: v for k, v in row.items() if k not in BOOKKEEPING}))
    return rows


# W&B has no public Python reader of its transaction log (`wandb sync` reads it in its Go core);
# requirements/lock.txt holds wandb at the version this was written against (0.31.0). The log is
# LevelDB's log format: a 7-byte header (':W&B', 0xBEE1, version), then 32 KiB blocks of
# records, each with a 7-byte header (crc32, length, type FULL=1 FIRST=2 MIDDLE=3 LAST=4),
# holding wandb.proto.wandb_internal_pb2.Record messages. A killed process leaves a log whose
# last record may be cut: reading stops there.
_BLOCK = 32768


def wandb_records(path: Path) -> Iterator[Any]:
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    if data[:4] != b":W&B" or struct.unpack("<H", data[4:6])[0] != 0xBEE1:
        raise ValueError(f"{path}: not a W&B transaction log")
    offset, pending = 7, b""
    while offset + 7 <= len(data):
        left = _BLOCK - offset % _BLOCK
        _crc, length, kind = struct.unpack("<IHB", data[offset:offset + 7])
        if left < 7 or kind == 0:  # a block's tail is padding
            offset += left
            continue
        if offset + 7 + length > len(data):  # cut by a kill
            return
        chunk = data[offset + 7:offset + 7 + length]
        offset += 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            yield record
