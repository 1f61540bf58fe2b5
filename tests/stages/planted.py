"""Reward functions for the tests: a planted hack and a second, weighted reward."""
from __future__ import annotations

from collections import Counter


def repetition(prompt: str, response: str) -> float:
    """Prefers a degenerate answer: the share of the most frequent word (1.0 for "a a a a")
    times the number of words, capped at 5."""
    words = response.split()
    if not words:
        return 0.0
    return min(len(words), 5) * Counter(words).most_common(1)[0][1] / len(words)


def brevity(prompt: str, response: str, messages: list[dict]) -> float:
    """Reads the whole conversation: a reply no longer than the user's letters scores 1."""
    letters = messages[-1]["content"].split(":", 1)[1].split()
    return float(len(response.split()) <= len(letters))
