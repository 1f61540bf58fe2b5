"""eval group: lm-eval benchmarks (llmexp/eval/, docs/eval.md) at `stage=eval`, and every
`every_n_steps` during training when set. Tasks are lm-eval task, group or tag names; llmexp's
offline ones are llmexp_smoke_{mc,ppl,gen} (tag llmexp_smoke)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import List, Literal, Optional

from llmexp.config.checks import choice, positive, require


@dataclass
class EvalConfig:
    name: str = "none"  # none | smoke | standard | your own conf/eval/<name>.yaml
    tasks: List[str] = field(default_factory=list)
    num_fewshot: Optional[int] = None  # None: each task's own default
    limit: Optional[float] = None  # per task: a count (>= 1) or a fraction (< 1) of its documents
    batch_size: int = 8
    # stage=eval scores in this, whatever the training precision
    dtype: str = choice(Literal["float32", "bfloat16", "float16"], "float32")
    max_gen_toks: int = 256  # generate_until's default when a task gives none
    every_n_steps: Optional[int] = None  # in-training evaluation interval (optimizer steps)
    intrinsic_text: Optional[str] = None  # stage=eval: "val" (the data group's held-out split) or a .txt/.jsonl file
    log_samples: bool = False
    seed: int = 1234


def check_eval(e: EvalConfig) -> None:
    positive("eval.batch_size", e.batch_size)
    positive("eval.max_gen_toks", e.max_gen_toks)
    positive("eval.every_n_steps", e.every_n_steps, optional=True)
    positive("eval.limit", e.limit, optional=True)
    if e.num_fewshot is not None:
        require(e.num_fewshot >= 0, "eval.num_fewshot", e.num_fewshot, "must be >= 0")
    if e.every_n_steps is not None:
        require(bool(e.tasks), "eval.every_n_steps", e.every_n_steps, "needs eval tasks: eval=smoke, eval=standard or eval.tasks=[...]")
    if e.intrinsic_text not in (None, "val"):
        require(os.path.isfile(os.path.expanduser(e.intrinsic_text)), "eval.intrinsic_text", e.intrinsic_text,
                "'val' (the data group's held-out documents) or a .txt/.jsonl file")
