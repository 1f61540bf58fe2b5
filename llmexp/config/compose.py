"""Compose pass: Hydra builds a DictConfig from conf/ groups, user config dirs and overrides.

Hydra's own failures (unknown group option, overriding a key that does not exist, syntax) are
turned into ConfigError here, so every bad input surfaces as the same one-line error.
"""
from __future__ import annotations

import copy
import functools
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

    Fast when called again (config-override tests compose hundreds of times): Hydra applies
    value overrides (`trainer.devices=8`) only after it has merged the defaults list, so the
    merged config of each set of group choices (`model=7b`, `+x=...` on a group, `~eval`, hydra.*)
    is composed once and kept, and each call applies its value overrides to a copy with Hydra's
    own override code, as Hydra itself would.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = list(overrides)
    dirs = tuple(str(Path(d).expanduser().resolve()) for d in config_dirs)
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
        groups = _group_repository(dirs)
        in_defaults = [o.package is not None or o.is_delete() or groups.group_exists(o.key_or_group)
                       or o.key_or_group.startswith("hydra") for o in parsed]
        base = _compose_defaults(tuple(x for x, d in zip(overrides, in_defaults) if d), dirs)
        composed = copy.deepcopy(base)
        _apply_value_overrides([o for o, d in zip(parsed, in_defaults) if not d], composed)
        return composed
    except ConfigError:
        raise
    except Exception as err:  # Hydra raises many types; all mean "bad composition input"
        raise from_hydra_error(err, overrides) from None


@functools.lru_cache(maxsize=None)
def _group_repository(dirs: tuple[str, ...]):
    """Hydra's view of the config groups (conf/, the user's dirs, the ConfigStore), to tell a
    group choice from a value override."""
    from hydra._internal.config_repository import ConfigRepository
    from hydra._internal.utils import create_config_search_path

    register_schema()
    search_path = create_config_search_path(str(conf_dir()))
    for d in dirs:
        search_path.append("main", f"file://{d}")
    return ConfigRepository(search_path)


@functools.lru_cache(maxsize=512)
def _compose_defaults(defaults_overrides: tuple[str, ...], dirs: tuple[str, ...]) -> DictConfig:
    """Hydra's own composition of the group choices; callers copy the result."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    overrides = list(defaults_overrides)
    if dirs:
        overrides.append("hydra.searchpath=[" + ",".join(f"file://{d}" for d in dirs) + "]")
    register_schema()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            return compose(config_name=PRIMARY_CONFIG, overrides=overrides)
    finally:
        GlobalHydra.instance().clear()


def _apply_value_overrides(overrides: list, cfg: DictConfig) -> None:
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    ConfigLoaderImpl._apply_overrides_to_config(overrides, cfg)
