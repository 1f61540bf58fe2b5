"""FSDP2 with gradient accumulation reduce-scatters gradients once per optimizer step (after
the last micro-batch), not once per micro-batch: counted on the CPU with gloo by wrapping
torch.distributed.reduce_scatter_single (what FSDP2's reduce-scatter calls) in every rank."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import llmexp
from tests.conftest import REPO, run_cli
from tests.parallel.conftest import LAYOUTS, TINY, train

# Loaded by every Python process of the run (the CLI and the ranks Lightning launches), so the
# wrapper is in place before FSDP2 is built; each call appends its rank and bytes to a log.
COUNTER = '''
import os
import torch.distributed as dist

_reduce_scatter = dist.reduce_scatter_single


def _counted(output, input, *args, **kwargs):
    with open(os.environ["REDUCE_SCATTER_LOG"], "a") as log:
        log.write(f"{dist.get_rank()} {input.numel() * input.element_size()}\\n")
    return _reduce_scatter(output, input, *args, **kwargs)


dist.reduce_scatter_single = _counted
'''

STEPS, LAYERS = 2, 2
ACCUMULATION = ["trainer.micro_batch_size=1", "trainer.global_batch_size=8"]  # 2 ranks x 1 x 4 micro-batches


def test_plan_keeps_unsharded_gradients_between_micro_batches():
    plan = llmexp.derive(llmexp.compose([*TINY, *LAYOUTS["fsdp"], *ACCUMULATION]))
    assert plan.grad_accumulation == 4 and not plan.reduce_every_microbatch
    assert plan.memory.accumulated_gradients == 4 * plan.params_total  # fp32, whole on each rank


def test_fsdp_reduce_scatters_only_after_the_last_micro_batch(tmp_path: Path):
    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks" / "sitecustomize.py").write_text(COUNTER)
    log = tmp_path / "reduce_scatter.log"
    env = {"REDUCE_SCATTER_LOG": str(log), "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{tmp_path / 'hooks'}:{REPO}"}
    result = run_cli(*TINY, *LAYOUTS["fsdp"], *ACCUMULATION, f"trainer.max_steps={STEPS}",
                     f"run_dir={tmp_path / 'run'}", env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    # the same numbers as one process accumulating all 8 micro-batches (fp32: ~1e-5 apart)
    single = train("single", tmp_path / "single", STEPS, *ACCUMULATION)
    fsdp = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert fsdp["val_loss"] == pytest.approx(single["val_loss"], abs=1e-4)
    assert fsdp["val_loss"] < fsdp["initial_val_loss"] - 0.05  # it learned: the comparison has teeth
    calls = [line.split() for line in log.read_text().splitlines()]
    per_rank = {rank: sum(1 for r, _ in calls if r == rank) for rank in ("0", "1")}
    # one reduce-scatter per FSDP unit (each block and the root) per optimizer step; before:
    # one per unit per micro-batch (4x as many)
    assert per_rank == {"0": STEPS * (LAYERS + 1), "1": STEPS * (LAYERS + 1)}, per_rank
    print(f"reduce-scatters per rank per step: {per_rank['0'] / STEPS:g}, "
          f"bytes per rank per step: {sum(int(b) for r, b in calls if r == '0') / STEPS:,.0f}")
