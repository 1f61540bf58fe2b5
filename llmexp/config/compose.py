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

from omegaconf import DictConfig, open_dict

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
    overrides: Sequence[str] = (),
    config_dirs: Iterable[str | os.PathLike] = (),
    config_path: str | os.PathLike | None = None,
    config_name: str = PRIMARY_CONFIG,
    sources: dict | None = None,
    precedence: list | None = None,
) -> DictConfig:
    """Hydra composition of the primary config with `overrides` (Hydra override syntax).

    `config_dirs` are added to Hydra's search path ahead of the shipped conf/, the same as
    `--config-dir` on the command line: a user's `model/my_model.yaml` there becomes
    `model=my_model`; `config_path`/`config_name` replace the primary config folder and file
    (`--config-path`/`--config-name`). What the user typed beats the recipe (llmexp/config/
    precedence.py); `sources`, when given, is filled with where each budget/batch value came from,
    `precedence` with the overrides that rule added.
    A typed `hydra.run.dir=DIR` is the run folder, as in any Hydra app.
    """
    from llmexp.config.precedence import recipe_overrides, value_sources

    dirs = [Path(d).expanduser().resolve() for d in config_dirs]
    primary = Path(config_path).expanduser().resolve() if config_path else conf_dir()
    for flag, folder in [*(("--config-dir", d) for d in dirs), ("--config-path", primary)]:
        if not folder.is_dir():
            raise ConfigError(flag, str(folder), "no such folder")
    if not (primary / f"{config_name}.yaml").is_file():
        raise ConfigError("--config-name", config_name, f"no {config_name}.yaml in {primary}")
    composed = _compose(list(overrides), dirs, primary, config_name)
    choices = dict(composed.hydra.runtime.choices)
    extra = recipe_overrides(list(overrides), choices, [*dirs, primary, conf_dir()],
                             lambda more: _compose([*overrides, *more], dirs, primary, config_name))
    if precedence is not None:
        precedence.extend(extra)
    if extra:
        composed = _compose([*overrides, *extra], dirs, primary, config_name)
    if sources is not None:
        sources.update(value_sources(list(overrides), choices, [*dirs, primary, conf_dir()], composed))
    if any(o.startswith("hydra.run.dir=") for o in overrides):
        typed_run_dir = any(o.lstrip("+").startswith("run_dir=") for o in overrides)
        if typed_run_dir:
            raise ConfigError("hydra.run.dir", composed.hydra.run.dir, "run_dir is given too: give one of them")
        composed.run_dir = str(composed.hydra.run.dir)
    with open_dict(composed):
        del composed["hydra"]
    return composed


def _compose(overrides: list[str], dirs: list[Path], primary: Path, config_name: str) -> DictConfig:
    """Hydra's composition, fast when called again (config-override tests compose hundreds of
    times): Hydra applies value overrides (`trainer.devices=8`) only after it has merged the
    defaults list, so the merged config of each set of group choices (`model=7b`, `+x=...` on a
    group, `~eval`, hydra.*) is composed once and kept, and each call applies its value overrides
    to a copy with Hydra's own override code, as Hydra itself would."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
        folders = tuple(str(d) for d in dirs)
        stamp = _files_stamp((*folders, str(primary)))  # a config file written or edited: composed anew
        groups = _group_repository(folders, str(primary), stamp)
        in_defaults = [o.package is not None or o.is_delete() or groups.group_exists(o.key_or_group)
                       or o.key_or_group.startswith("hydra") for o in parsed]
        base = _compose_defaults(tuple(x for x, d in zip(overrides, in_defaults) if d), folders, str(primary),
                                 config_name, stamp)
        composed = copy.deepcopy(base)
        _apply_value_overrides([o for o, d in zip(parsed, in_defaults) if not d], composed)
        return composed
    except ConfigError:
        raise
    except Exception as err:  # Hydra raises many types; all mean "bad composition input"
        raise from_hydra_error(err, overrides) from None


def _files_stamp(folders: tuple[str, ...]) -> tuple:
    """Every YAML file under `folders` with its size and modification time: the cache key part
    that makes a cached composition stale when a config file appears or changes (a scaling study
    writes its runs' model and recipe files between compositions)."""
    return tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size)
                 for folder in folders for f in sorted(Path(folder).rglob("*.yaml")))


@functools.lru_cache(maxsize=8)
def _group_repository(dirs: tuple[str, ...], primary: str, stamp: tuple):
    """Hydra's view of the config groups (the primary folder, the user's dirs, the ConfigStore),
    to tell a group choice from a value override. Hydra's internal classes: no public API
    answers "is this a group", and the lock holds hydra-core's version."""
    from hydra._internal.config_repository import ConfigRepository
    from hydra._internal.utils import create_config_search_path

    register_schema()
    search_path = create_config_search_path(primary)
    for d in dirs:
        search_path.append("main", f"file://{d}")
    return ConfigRepository(search_path)


@functools.lru_cache(maxsize=512)
def _compose_defaults(defaults_overrides: tuple[str, ...], dirs: tuple[str, ...], primary: str,
                      config_name: str, stamp: tuple) -> DictConfig:
    """Hydra's own composition of the group choices; callers copy the result."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    overrides = list(defaults_overrides)
    if dirs:
        overrides.append("hydra.searchpath=[" + ",".join(f"file://{d}" for d in dirs) + "]")
    register_schema()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=primary, version_base="1.3"):
            return compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()


def _apply_value_overrides(overrides: list, cfg: DictConfig) -> None:
    """Hydra's own code for `key=value`, `+key=value`, `++key=value` and `~key` on a composed
    config (internal to Hydra; the lock holds its version)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from omegaconf.errors import OmegaConfBaseException

    for override in overrides:  # one at a time, so an error names its override
        try:
            ConfigLoaderImpl._apply_overrides_to_config([override], cfg)
        except ValueError as err:
            if isinstance(err, OmegaConfBaseException):  # typed errors: translate.py names key and type
                raise
            # OmegaConf.update indexes a list by number: `pipeline.nope` where pipeline is a list
            hint = "; a list's items are numbered (<list>.0.<key>)" if "invalid literal for int()" in str(err) else ""
            raise ConfigError(override.key_or_group, override.value(), f"cannot be set: {err}{hint}") from None
