"""Compose pass: Hydra builds a DictConfig from conf/ groups, user config dirs and overrides.

Hydra's own failures (unknown group option, overriding a key that does not exist, syntax) are
turned into ConfigError here, so every bad input surfaces as the same one-line error.
"""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

from omegaconf import DictConfig

from llmexp.config.errors import ConfigError
from llmexp.config.translate import from_hydra_error

PRIMARY_CONFIG = "config"
SCHEMA_NAME = "llmexp_schema"  # config.yaml's defaults list starts from it


def register_schema() -> None:
    """Give Hydra the typed schema, so composition knows every key and its type."""
    from hydra.core.config_store import ConfigStore

    from llmexp.config.schema import STAGE_SCHEMAS, Config

    store = ConfigStore.instance()
    store.store(name=SCHEMA_NAME, node=Config)
    for name, schema in STAGE_SCHEMAS.items():
        store.store(group="schema/stage", name=name, node=schema)


def conf_dir() -> Path:
    """The shipped conf/: inside the installed wheel, or at the top of a source checkout."""
    packaged = Path(str(resources.files("llmexp"))) / "conf"
    if (packaged / f"{PRIMARY_CONFIG}.yaml").is_file():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "conf"
    if (checkout / f"{PRIMARY_CONFIG}.yaml").is_file():
        return checkout
    raise FileNotFoundError("llmexp's conf/ folder is missing from this installation")


def compose_dictconfig(
    overrides: Sequence[str] = (), config_dirs: Iterable[str | os.PathLike] = ()
) -> DictConfig:
    """Hydra composition of the primary config with `overrides` (Hydra override syntax).

    `config_dirs` are added to Hydra's search path ahead of the shipped conf/, the same as
    `--config-dir` on the command line: a user's `model/my_model.yaml` there becomes
    `model=my_model`.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    overrides = list(overrides)
    extra = [f"file://{Path(d).expanduser().resolve()}" for d in config_dirs]
    if extra:
        overrides.append("hydra.searchpath=[" + ",".join(extra) + "]")
    register_schema()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            return compose(config_name=PRIMARY_CONFIG, overrides=overrides)
    except ConfigError:
        raise
    except Exception as err:  # Hydra raises many types; all mean "bad composition input"
        raise from_hydra_error(err, overrides) from None
    finally:
        GlobalHydra.instance().clear()
