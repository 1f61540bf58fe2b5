"""The reward model's scalar head in every layout: its tensor-parallel plan (rowwise from the
final norm's sequence-split output, partial scores all-reduced whole) and FSDP/DDP around it
reach the single-process reward training step for step (gloo processes on the CPU)."""
from __future__ import annotations

import pytest

from llmexp.callbacks import read_metrics
from tests.conftest import run_cli
from tests.parallel.conftest import LAYOUTS, train

STEPS = 4
# Preference pairs of the synthetic sort task (rows up to 64 tokens), 4 pairs per micro-batch,
# 8 per step; a large constant learning rate so the scores (zero-initialised head) move at once.
REWARD = ["stage=reward", "stage.dataset=synthetic:sort", "trainer.seq_len=64", "trainer.accelerator=cpu",
          "parallelism.precision=32", "trainer.micro_batch_size=4", "trainer.global_batch_size=8",
          "trainer.max_tokens=null", f"trainer.max_steps={STEPS}", f"trainer.val_every={STEPS}", "trainer.log_every=1",
          "trainer.val_batches=2", "optimizer.schedule=constant", "optimizer.warmup_steps=0", "optimizer.lr=1e-2"]
# train/margin and accuracy are rank 0's micro-batch values: not comparable once dp > 1.
COMPARED = ("train/loss", "train/grad_norm", "val/loss")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("base") / "run"
    train("single", run_dir, 2)
    return run_dir


def reward(layout: str, base, run_dir) -> dict[str, list[float]]:
    result = run_cli(*REWARD, *LAYOUTS[layout], f"init_from={base}", f"run_dir={run_dir}")
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = read_metrics(run_dir / "metrics.csv")
    return {name: [v for _, v in metrics[name]] for name in COMPARED}


@pytest.fixture(scope="module")
def single(base, tmp_path_factory):
    return reward("single", base, tmp_path_factory.mktemp("single") / "run")


@pytest.mark.slow  # a base pretraining, a single-process and a 2-process reward training
@pytest.mark.parametrize("layout", ["tp", "fsdp", "ddp", "fsdp_tp"])
def test_reward_training_matches_single_per_step(layout, base, single, tmp_path):
    got = reward(layout, base, tmp_path / "run")
    assert len(single["train/loss"]) == STEPS and single["val/loss"][-1] < single["val/loss"][0] - 5e-3  # it learns
    deltas = {name: max(abs(a - b) for a, b in zip(got[name], single[name])) for name in COMPARED}
    print(f"\nreward, {layout} vs single, max |delta| per metric over {STEPS} steps: {deltas}")
    assert all(len(got[name]) == len(single[name]) for name in COMPARED)
    assert max(deltas.values()) <= 1e-5, deltas
