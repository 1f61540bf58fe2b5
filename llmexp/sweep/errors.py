"""The one error type of sweep tooling: a one-line message meant for people (exit code 2)."""
from __future__ import annotations


class SweepError(ValueError):
    """A sweep file or parameter value that cannot run; `str(err)` names the key and the fix."""
