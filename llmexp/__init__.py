"""llmexp: declarative, config-compiled LLM experiments.

The passes are a small API for tests and tools; none of them imports torch or Lightning:

    >>> import llmexp
    >>> cfg = llmexp.compose(["model=7b", "tokenizer=bpe_32k"])
    >>> llmexp.derive(cfg).params_total
    6738415616
"""
from __future__ import annotations

from llmexp.api import compose, derive
from llmexp.config.errors import ConfigError
from llmexp.config.schema import Config
from llmexp.plan import Plan

__all__ = ["compose", "derive", "ConfigError", "Config", "Plan"]
__version__ = "0.1.0"
