"""The one error type of the scaling tools: bad input, said in one line for people."""
from __future__ import annotations


class ScalingError(ValueError):
    """Input a scaling tool cannot use: too few runs or budgets to fit, an unknown law, a bad
    budget. `str(err)` is one line that says what is wrong and what would do."""
