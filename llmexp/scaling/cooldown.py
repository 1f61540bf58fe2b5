"""Several (N, D) points from one WSD run: cooldown branches (Hägele et al. 2024; MiniCPM).

A warmup-stable-decay run of T steps has a constant learning rate until its decay starts, so a
run of T' < T steps with the same warmup and decay fraction follows it exactly until T'
starts its own decay. A study with `cooldowns` (fractions p of each run's steps) therefore
trains each (budget, size) as a chain:

  trunk-1 (constant lr, to the stable end s_1 of the p_1 branch) -> trunk-2 (resumes trunk-1,
  to s_2) -> ... and from trunk-k a branch (resumes it, WSD to T_k = p_k T, decays for the
  last round(f T_k) steps), the last branch being the full run (p = 1).

Every branch is a finished run of T_k steps as llmexp counts it (summary.json's tokens and
FLOPs), so each is a point for approach 3; the full-length one keeps the IsoFLOP budget and the
shorter ones leave approach 2 alone (their compute is p C, not C). The trunks are stable-phase
only and are no points. Checkpoints: a trunk writes last.ckpt at its last step
(trainer.checkpoint_every = its steps), which the next link resumes with `resume=<trunk folder>`.
The extra compute is the decays: sum over p < 1 of f p C.
"""
from __future__ import annotations

from dataclasses import replace
from typing import List, Sequence

from llmexp.scaling.errors import ScalingError

TRUNK, BRANCH = "trunk", "branch"


def stable_end(steps: int, decay_fraction: float) -> int:
    """The last constant-lr step of a WSD run of `steps` steps (llmexp.optim.lr_multiplier's rule)."""
    return steps - max(1, round(decay_fraction * steps))


def check_fractions(fractions: Sequence[float]) -> List[float]:
    values = sorted(set(float(p) for p in fractions))
    if not values or not all(0 < p < 1 for p in values):
        raise ScalingError(f"cooldowns {list(fractions)}: fractions of each run's steps, each in (0, 1)")
    return values + [1.0]


def branches(run, fractions: Sequence[float], decay_fraction: float, warmup_steps: int) -> list:
    """The chain of trunk and branch runs that replaces `run` (a StudyRun)."""
    chain, previous = [], None
    for p in check_fractions(fractions):
        steps = max(1, round(p * run.steps))
        end = stable_end(steps, decay_fraction)
        if end <= max(warmup_steps, previous.steps if previous else 0):
            raise ScalingError(f"run {run.id}: a cooldown at {p:g} of {run.steps} steps decays from step {end}, inside "
                               "the warmup or the previous branch's stable phase: fewer or later cooldowns, or more steps")
        trunk = replace(run, id=f"{run.id}-s{end}", steps=end, tokens=run.tokens // run.steps * end, role=TRUNK,
                        after=previous.id if previous else None, budget=None)
        tag = "" if p == 1.0 else f"-p{round(100 * p)}"
        branch = replace(run, id=f"{run.id}{tag}", steps=steps, tokens=run.tokens // run.steps * steps, role=BRANCH,
                         after=trunk.id, budget=run.budget if p == 1.0 else None)
        chain += [trunk, branch]
        previous = trunk
    return chain


def recipe(run) -> dict:
    """The schedule settings a trunk or branch adds to its recipe (the study adds `resume`)."""
    if run.role == TRUNK:
        return {"optimizer": {"schedule": "constant"}, "trainer": {"checkpoint_every": run.steps}}
    return {"optimizer": {"schedule": "wsd"}}
