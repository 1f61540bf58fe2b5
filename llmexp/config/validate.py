"""Validate pass: composed DictConfig -> typed Config, or one ConfigError.

Three named steps: the schema types every key (OmegaConf, llmexp/config/schema.py); the
init_from pass takes the model and tokenizer from the weights a run starts from
(init_from.py); the rules check values and relations (groups/*.py, rules.py). `planned_runs`
are run folders a pipeline will create, passed explicitly (llmexp/pipeline.py). Nothing here
imports torch or Lightning, and nothing is written.
"""
from __future__ import annotations

import dataclasses
import functools

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from llmexp.artifacts import PlannedRuns
from llmexp.config.checks import one_of
from llmexp.config.errors import ConfigError
from llmexp.config.init_from import resolve_init_from
from llmexp.config.rules import check_rules, normalize_dry_run
from llmexp.config.schema import STAGE_SCHEMAS, Config
from llmexp.config.translate import from_omegaconf_error, reject_unknown_keys


@functools.lru_cache(maxsize=1)
def _schema() -> DictConfig:
    """The typed schema as OmegaConf builds it from the dataclasses (built once: ~40 ms)."""
    return OmegaConf.structured(Config)


def typed(composed: DictConfig) -> Config:
    """The schema step: every key known, typed and resolved."""
    reject_unknown_keys(composed, Config)
    try:
        merged = OmegaConf.merge(_schema(), composed)  # merge copies: the cached schema stays as it is
        OmegaConf.resolve(merged)
        missing = sorted(OmegaConf.missing_keys(merged))
        if missing:
            raise ConfigError(missing[0], "???", "required: give it a value")
        config: Config = OmegaConf.to_object(merged)
    except ConfigError:
        raise
    except OmegaConfBaseException as err:
        raise from_omegaconf_error(err) from None
    return dataclasses.replace(config, dry_run=normalize_dry_run(config.dry_run))


def validate(composed: DictConfig, planned_runs: PlannedRuns = {}) -> Config:
    """Type-check `composed` against the schema, adopt init_from's model, apply the rules."""
    config = typed(composed)
    one_of("stage.name", config.stage.name, STAGE_SCHEMAS)
    config = resolve_init_from(config, planned_runs)
    check_rules(config, planned_runs)
    return config
