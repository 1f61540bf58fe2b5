"""Synthetic tasks with a checkable answer, for post-training on a CPU in minutes and for its
tests: `stage.dataset=synthetic:<task>` generates SFT records, preference pairs or prompts,
and the task's rule-based reward is a `stage.reward_fn` ("llmexp.stages.tasks:sort_reward").

sort: "sort: d a c" -> "a c d". The answer is checkable, the reward graded, and a wrong answer
of the same letters makes a hard negative for preferences.
"""
from __future__ import annotations

import random
from typing import Callable

LETTERS = "abcdefgh"
MIN_LEN, MAX_LEN = 3, 5


def _sort_problem(rng: random.Random) -> tuple[str, str]:
    letters = rng.sample(LETTERS, rng.randint(MIN_LEN, MAX_LEN))
    return "sort: " + " ".join(letters), " ".join(sorted(letters))


def sort_answer(prompt: str) -> list[str]:
    return sorted(prompt.split(":", 1)[1].split())


def sort_reward(prompt: str, response: str) -> float:
    """Fraction of positions holding the right letter, less a penalty per missing or extra
    letter: 1.0 only for the exact answer; in [-1, 1]."""
    want, got = sort_answer(prompt), response.split()
    right = sum(a == b for a, b in zip(want, got))
    return max(-1.0, (right - abs(len(got) - len(want))) / len(want))


def sort_correct(prompt: str, response: str) -> float:
    """Exact match, 1.0 or 0.0: the task's gold metric (`stage.eval_fn`)."""
    return float(response.split() == sort_answer(prompt))


def sft_records(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [dict(zip(("prompt", "response"), _sort_problem(rng))) for _ in range(n)]


def preference_records(n: int, seed: int) -> list[dict]:
    """chosen: the sorted letters; rejected: the same letters in another order."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        prompt, answer = _sort_problem(rng)
        letters = answer.split()
        wrong = letters[:]
        while wrong == letters:
            rng.shuffle(wrong)
        out.append({"prompt": prompt, "chosen": answer, "rejected": " ".join(wrong)})
    return out


def prompt_records(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [{"prompt": _sort_problem(rng)[0]} for _ in range(n)]


# task -> kind (sft | preference | prompts) -> generator(n, seed); the names validation accepts
# are llmexp/config/groups/stage.py's SYNTHETIC_TASKS (config imports no runtime code)
TASKS: dict[str, dict[str, Callable[[int, int], list[dict]]]] = {
    "sort": {"sft": sft_records, "preference": preference_records, "prompts": prompt_records},
}
