"""The one error type of the validate pass: it names the key, the bad value and what is allowed."""
from __future__ import annotations

import sys
from typing import NoReturn


class ConfigError(ValueError):
    """An invalid configuration. `str(err)` is one line meant for people."""

    def __init__(self, key: str, value: object, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}={_show(value)}: {allowed}")


def _show(value: object) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def fail(message: str) -> NoReturn:
    """How a user-caused error leaves the command line: one line on stderr, exit code 2."""
    print(f"llmexp: error: {message}", file=sys.stderr)
    raise SystemExit(2)
