"""Building blocks of the validate pass: typed choices declared beside their fields, and the
one-line checks every group's rules are written with. Each failure is one ConfigError naming
the key, the value and what is allowed."""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable, get_args

from llmexp.config.errors import ConfigError


def choice(options: Any, default: Any) -> Any:
    """A field whose value is one of `options` (a `Literal[...]`), checked by `check_choices`.

    OmegaConf 2.3 cannot type a field as a Literal, so the field stays `str` for composition and
    the Literal lives here, beside the field, as the one list of what is allowed."""
    allowed = get_args(options)
    return dataclasses.field(default=default, metadata={"choices": allowed})


def check_choices(node: Any, prefix: str = "") -> None:
    """Every field declared with `choice` holds one of its options (None where the field
    defaults to None), in `node` and every dataclass below it."""
    for f in dataclasses.fields(node):
        value, key = getattr(node, f.name), f"{prefix}{f.name}"
        allowed = f.metadata.get("choices")
        if allowed is not None and not (value is None and f.default is None):
            one_of(key, value, allowed)
        for i, item in enumerate(value if isinstance(value, list) else [value]):
            if dataclasses.is_dataclass(item):
                check_choices(item, f"{key}.{i}." if isinstance(value, list) else f"{key}.")


def require(ok: bool, key: str, value: object, allowed: str) -> None:
    if not ok:
        raise ConfigError(key, value, allowed)


def one_of(key: str, value: object, options: Iterable[object]) -> None:
    options = tuple(options)
    require(value in options, key, value, "allowed: " + ", ".join(map(str, options)))


def finite(key: str, value: float | int | None) -> None:
    require(value is None or math.isfinite(value), key, value, "must be a finite number")


def positive(key: str, value: float | int | None, optional: bool = False) -> None:
    if value is None and optional:
        return
    finite(key, value)
    require(value is not None and value > 0, key, value, "must be > 0")


def in_range(key: str, value: float, low: float, high: float, low_open: bool = False, high_open: bool = False) -> None:
    finite(key, value)
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    require(above and below, key, value, f"must be in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}")
