"""Validate pass: composed DictConfig -> typed Config, or one ConfigError.

The schema dataclasses decide which keys exist and their types; `rules.py` checks the
relations between keys. Nothing here imports torch or Lightning.
"""
from __future__ import annotations

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from llmexp.config.errors import ConfigError
from llmexp.config.rules import check_rules
from llmexp.config.translate import from_omegaconf_error, reject_unknown_keys
from llmexp.config.schema import Config


def validate(composed: DictConfig) -> Config:
    """Type-check `composed` against the schema, resolve interpolations, apply the rules."""
    reject_unknown_keys(composed, Config)
    try:
        typed = OmegaConf.merge(OmegaConf.structured(Config), composed)
        OmegaConf.resolve(typed)
        missing = sorted(OmegaConf.missing_keys(typed))
        if missing:
            raise ConfigError(missing[0], "???", "required: give it a value")
        config: Config = OmegaConf.to_object(typed)
    except ConfigError:
        raise
    except OmegaConfBaseException as err:
        raise from_omegaconf_error(err) from None
    check_rules(config)
    return config
