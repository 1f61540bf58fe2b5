"""Turn Hydra's and OmegaConf's exceptions into one-line ConfigErrors (key, value, allowed)."""
from __future__ import annotations

import dataclasses
import re
import typing
from typing import Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from llmexp.config.errors import ConfigError


def reject_unknown_keys(node: object, schema: type, prefix: str = "") -> None:
    """Hydra's `+key=value` can add keys the schema does not know: refuse them by name."""
    if not isinstance(node, DictConfig) or not dataclasses.is_dataclass(schema):
        return
    fields = {f.name: f for f in dataclasses.fields(schema)}
    hints = typing.get_type_hints(schema)
    for key in node.keys():
        full = f"{prefix}{key}"
        if key not in fields:
            allowed = ", ".join(sorted(fields))
            raise ConfigError(full, node._get_node(key)._value(), f"unknown key; allowed: {allowed}")
        child, hint = node._get_node(key), hints[key]
        if hint is typing.Any and isinstance(child, DictConfig):
            hint = OmegaConf.get_type(child)  # typed by its group's own schema (stage)
        if isinstance(child, DictConfig):
            reject_unknown_keys(child, hint, full + ".")
        elif isinstance(child, ListConfig) and not child._is_none():  # an Optional[List] may be None
            item = typing.get_args(hint)[0] if typing.get_args(hint) else None
            for i, element in enumerate(child):
                reject_unknown_keys(element, item, f"{full}.{i}.")


def from_omegaconf_error(err: OmegaConfBaseException, overrides: Sequence[str] = ()) -> ConfigError:
    key = getattr(err, "full_key", None) or "config"
    given = dict(o.lstrip("+~").split("=", 1) for o in overrides if "=" in o)
    message = str(err).splitlines()[0]
    unknown = re.match(r"Key '([^']+)' not in '(\w+)'", message)
    if unknown:
        node = getattr(err, "object_type", None)
        fields = sorted(getattr(node, "__dataclass_fields__", {}) or [])
        allowed = f"unknown key; allowed: {', '.join(fields)}" if fields else "unknown key"
        return ConfigError(*_override_reaching(key, given), allowed)
    value = getattr(err, "value", None)
    conversion = re.search(r"could not be converted to (\w+)", message)
    if conversion:
        return ConfigError(key, value, f"expected {conversion.group(1).lower()}")
    if "is not a valid bool" in message:
        return ConfigError(key, value, "expected bool (true or false)")
    if "Non optional field cannot be assigned None" in message or "field cannot be None" in message:
        return ConfigError(key, None, "required: cannot be null")
    if "Interpolation" in message or "interpolation" in message:
        return ConfigError(key, value, f"bad interpolation ({message})")
    return ConfigError(key, value, message)


def _override_reaching(key: str, given: dict[str, str]) -> tuple[str, object]:
    """The (key, value) the user typed that reached `key`: OmegaConf names the first unknown part
    (`foo` of `foo.bar=1`) and list items as `pipeline[0]`."""
    dotted = re.sub(r"\[(\d+)\]", r".\1", key)
    typed = next((k for k in given if k == dotted or k.startswith(dotted + ".")), dotted)
    return typed, given.get(typed)


def from_hydra_error(err: Exception, overrides: Sequence[str]) -> ConfigError:
    if isinstance(err.__cause__, OmegaConfBaseException):
        return from_omegaconf_error(err.__cause__, overrides)
    text = str(err)
    missing = re.search(r"Could not find '([^']+)/([^']+)'", text)
    if missing:
        group, option = missing.groups()
        options = re.findall(r"^\t(\S+)$", text, flags=re.M)
        allowed = ", ".join(options) if options else "see conf/" + group
        return ConfigError(group, option, f"unknown option; allowed: {allowed}")
    not_in_struct = re.search(r"Could not override '([^']+)'", text)
    if not_in_struct:
        key = not_in_struct.group(1)
        value = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0] == key), None)
        return ConfigError(key, value, "unknown key (add it to conf/ and the schema, or check the spelling)")
    append_exists = re.search(r"Could not append to config. An item is already at '([^']+)'", text)
    if append_exists:
        return ConfigError(append_exists.group(1), None, "key exists already: override it without '+'")
    syntax = re.search(r"Error parsing override '([^']+)'", text)
    if syntax:
        return ConfigError("override", syntax.group(1), "not valid Hydra override syntax (key=value)")
    first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    return ConfigError("config", "", f"could not be composed: {first}")
