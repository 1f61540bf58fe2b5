"""Scaling laws for llmexp: compute-optimal plans, model shapes for a target size, IsoFLOP
studies run through `python -m llmexp`, approach 2 and 3 fits with bootstrap intervals, and a
report. The command line is `python -m llmexp.scaling`; docs/scaling.md walks through it.

    >>> from llmexp.scaling import EPOCH, plan
    >>> a = plan(EPOCH, compute=5.76e23)
    >>> round(a.params / 1e9), round(a.tokens / 1e12, 1)
    (72, 1.3)
"""
from __future__ import annotations

from llmexp.scaling.errors import ScalingError
from llmexp.scaling.laws import CHINCHILLA, EPOCH, ParametricLaw, PowerLawAllocation, TokensPerParam, resolve_law
from llmexp.scaling.planner import plan

__all__ = ["CHINCHILLA", "EPOCH", "ParametricLaw", "PowerLawAllocation", "ScalingError", "TokensPerParam", "plan", "resolve_law"]
