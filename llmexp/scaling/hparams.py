"""Per-run hyperparameters of a study as rules of the budget C: a constant, or a power law
value = coef * C**exponent, such as DeepSeek LLM's fits (Bi et al. 2024, eq. 1):
learning rate 0.3118 * C**-0.1250 and batch size 0.2920 * C**0.3271 tokens."""
from __future__ import annotations

import re
from dataclasses import dataclass

from llmexp.scaling.errors import ScalingError


@dataclass(frozen=True)
class Rule:
    coef: float
    exponent: float = 0.0  # 0: a constant

    def __call__(self, C: float) -> float:
        return self.coef * C**self.exponent

    def __str__(self) -> str:
        return f"{self.coef:g}" if self.exponent == 0 else f"{self.coef:g}*C^{self.exponent:g}"


DEEPSEEK = {"lr": Rule(0.3118, -0.1250), "batch_tokens": Rule(0.2920, 0.3271)}
_POWER = re.compile(r"^\s*([0-9.eE+-]+)\s*\*\s*C\s*\^\s*([0-9.eE+-]+)\s*$")


def parse_rule(text: str, what: str) -> Rule:
    """'3e-3' (constant), 'deepseek', or 'COEF*C^EXPONENT'; `what` is lr or batch_tokens."""
    if text.strip() == "deepseek":
        return DEEPSEEK[what]
    match = _POWER.match(text)
    try:
        rule = Rule(float(match.group(1)), float(match.group(2))) if match else Rule(float(text))
    except ValueError:
        rule = None
    if rule is None or not rule.coef > 0:
        raise ScalingError(f"{what} rule {text!r}: expected a positive number, 'deepseek', or COEF*C^EXPONENT")
    return rule


def batch_sequences(tokens: float, seq_len: int, micro_batch: int, world: int) -> int:
    """The global batch in sequences nearest `tokens` per step that the trainer accepts: a
    multiple of micro batch x devices (the study keeps the configured micro batch, a memory
    setting, for every run)."""
    step = micro_batch * world
    return step * max(1, round(tokens / seq_len / step))
