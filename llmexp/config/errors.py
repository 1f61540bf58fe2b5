"""The one error type of the validate pass: it names the key, the bad value and what is allowed."""
from __future__ import annotations

import argparse
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


def fail(message: str, prog: str = "llmexp") -> NoReturn:
    """How a user-caused error leaves the command line: one line on stderr, exit code 2."""
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr)
    raise SystemExit(2)


class OneLineParser(argparse.ArgumentParser):
    """argparse for llmexp's subcommands: a usage error is one line (not argparse's usage block)
    and options are never prefix-matched (`--c` is not `--count`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message: str) -> NoReturn:
        name = self.prog.removeprefix("python -m ")
        if "." in name.split()[0]:  # `python -m llmexp.scaling plan` reports as llmexp.scaling, like its other errors
            name = name.split()[0]
        fail(f"{message} (see {self.prog} --help)", name)


def positive_number(text: str) -> float:
    """argparse type: a finite number > 0 (a usage error otherwise, one line via OneLineParser)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0: {text!r}")
    return value


def positive_count(text: str) -> int:
    """argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1: {text!r}")
    return value
