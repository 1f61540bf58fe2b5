"""W&B sweep parameter values -> Hydra override strings, the way the W&B agent passes them.

The agent writes each parameter as `f"{name}={value}"` (`${args_no_hyphens}`, see
wandb/sdk/launch/sweeps/utils.py `create_sweep_command_args`): Python's `str()`, not Hydra's
grammar. Most values survive (numbers, booleans, plain words, lists of numbers), some do not:

    None            -> name=None        Hydra reads the string 'None'
    "a,b"           -> name=a,b         Hydra reads a multirun sweep over 'a' and 'b'
    [1, None]       -> name=[1, None]   Hydra reads [1, 'None']
    {"a": 1}        -> name={'a': 1}    not Hydra syntax at all

The rule llmexp applies, here and in `agent_overrides` on the program side: a *string* value is
Hydra override text and goes through as written (so a sweep file can say "null", "'a,b'" or
"[1,null]" and mean Hydra's reading of it), unless Hydra would read it as a sweep or not at all;
any other value is a typed value and must reach the program as that value.
"""
from __future__ import annotations

import math
import os
from typing import Any, Mapping, Optional, Sequence

from llmexp.sweep.compat import plain
from llmexp.sweep.errors import SweepError

_PARSER = None


def parse(override: str) -> Any:
    """The value Hydra's own override parser reads from `key=text`; SweepError if it is not one
    value (a multirun sweep such as `a,b`, or not Hydra syntax)."""
    global _PARSER
    from hydra.core.override_parser.overrides_parser import OverridesParser

    _PARSER = _PARSER or OverridesParser.create()
    try:
        parsed = _PARSER.parse_override(override)
    except Exception as err:  # Hydra's parser raises HydraException / OverrideParseException
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SweepError(f"{override!r} is not a Hydra override ({first})") from None
    if parsed.is_sweep_override():
        raise SweepError(f"{override!r} is a Hydra multirun sweep, not one value")
    return parsed.value()


def same(a: Any, b: Any) -> bool:
    """Equal values of the same type (1 is not 1.0 nor True; nan equals nan)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


def _element(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)  # shortest text that reads back as the same float; inf/nan included
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_quoted_if_needed(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_quoted_if_needed(v)}" for k, v in value.items()) + "}"
    raise SweepError(f"{value!r}: a sweep value must be null, a bool, a number, a string, a list or a dict")


def _quoted_if_needed(value: Any) -> str:
    text = _element(value)
    if not isinstance(value, str) or _reads_as(text, value):
        return text
    for quote in ("'", '"'):
        quoted = quote + value.replace("\\", "\\\\").replace(quote, "\\" + quote) + quote
        if _reads_as(quoted, value):
            return quoted
    raise SweepError(f"{value!r} cannot be written as a Hydra string")


def _reads_as(text: str, value: Any) -> bool:
    try:
        return same(parse(f"key={text}"), value)
    except SweepError:
        return False


def hydra_value(value: Any) -> str:
    """`value` as Hydra override text that Hydra reads back as exactly `value` (strings quoted
    when they would otherwise read as something else)."""
    value = plain(value)
    text = _quoted_if_needed(value)
    if not _reads_as(text, value):
        raise SweepError(f"{value!r} cannot be written as a Hydra override value")
    return text


def to_override(key: str, value: Any) -> str:
    """`key=<value as Hydra reads it back>`: for commands people copy (best.txt) and repairs."""
    return f"{key}={hydra_value(value)}"


def agent_argument(key: str, value: Any) -> str:
    """What the W&B agent passes for one parameter under `${args_no_hyphens}` (wandb's own code)."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    return create_sweep_command_args({"args": {key: {"value": plain(value)}}})["args_no_hyphens"][0]


def misread(key: str, value: Any) -> Optional[str]:
    """None when the agent's `key=value` reaches Hydra as the sweep meant it (see the module's
    rule); otherwise how Hydra reads it instead, in words."""
    value = plain(value)
    argument = agent_argument(key, value)
    try:
        got = parse(argument)
    except SweepError as err:
        return str(err)
    if isinstance(value, str) or same(got, value):
        return None
    return f"the W&B agent passes {argument!r}, which Hydra reads as {got!r} ({type(got).__name__})"


def agent_overrides(argv: Sequence[str], environ: Optional[Mapping[str, str]] = None) -> list[str]:
    """The program side of a W&B sweep: `argv` with each sweep parameter the agent passed in a
    form Hydra misreads replaced by the value the sweep meant.

    The agent writes the run's parameters, typed, to the YAML file named by
    WANDB_SWEEP_PARAM_PATH (the same file wandb.init reads them from); outside an agent argv is
    returned unchanged. Only `key=value` items naming a parameter in that file are touched, and
    only when `misread` says Hydra would get another value. The result depends on argv and that
    file alone, so every DDP rank, relaunched by Lightning with the same argv and environment,
    composes the same config.
    """
    environ = os.environ if environ is None else environ
    path = environ.get("WANDB_SWEEP_PARAM_PATH")
    if not path or not os.path.isfile(path):
        return list(argv)
    from wandb.sdk.lib import config_util

    params = config_util.dict_from_config_file(path) or {}
    repaired = []
    for item in argv:
        key, sep, _ = item.partition("=")
        if sep and key in params and item == agent_argument(key, params[key]) and misread(key, params[key]):
            item = to_override(key, params[key])
        repaired.append(item)
    return repaired
