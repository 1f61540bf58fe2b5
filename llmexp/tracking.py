"""Where a run's metrics go: metrics.csv always, plus W&B (offline without a key) or
TensorBoard as `logger.name` says. Runtime layer: training and evaluation both log here."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from llmexp.callbacks import RunCSVLogger
from llmexp.config.schema import Config


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
    loggers = [RunCSVLogger(run_dir)]  # <run_dir>/metrics.csv, always
    if cfg.logger.name == "wandb":
        from lightning.pytorch.loggers import WandbLogger

        online = wandb_online()
        if not online:
            os.environ.setdefault("WANDB_MODE", "offline")
        loggers.append(
            WandbLogger(
                project=cfg.logger.project, entity=cfg.logger.entity, group=cfg.logger.group,
                tags=list(cfg.logger.tags), name=run_dir.name, id=_wandb_run_id(run_dir),
                save_dir=str(run_dir), offline=not online, resume="allow",
            )
        )
    elif cfg.logger.name == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version=""))
    return loggers


def _wandb_run_id(run_dir: Path) -> str:
    """A W&B sweep agent assigns the id (WANDB_RUN_ID); otherwise one derived from the run
    folder's absolute path, so a resumed run continues the same W&B run and two folders of
    the same name never share one."""
    digest = hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:8]
    return os.environ.get("WANDB_RUN_ID") or f"{run_dir.name[:48]}-{digest}"
