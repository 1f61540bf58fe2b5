"""Every layout reaches the single-process loss for the same global batch and seed: DDP and
FSDP split the batch over 2 processes, TP splits every block over 2, fsdp_tp does both over 4
(gloo on the CPU, processes started by Lightning)."""
from __future__ import annotations

import pytest

from tests.parallel.conftest import train

STEPS = 6


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return train("single", tmp_path_factory.mktemp("single") / "run", STEPS)


@pytest.mark.parametrize("layout", [
    "ddp", "fsdp", "tp",
    pytest.param("fsdp_tp", marks=pytest.mark.slow),  # 4 processes on 2 cores: minutes
])
def test_layout_reaches_the_single_process_loss(layout, reference, tmp_path):
    summary = train(layout, tmp_path / "run", STEPS)
    assert reference["val_loss"] < reference["initial_val_loss"] - 0.3  # it learned: the check has teeth
    assert summary["steps"] == reference["steps"] == STEPS
    assert summary["initial_val_loss"] == pytest.approx(reference["initial_val_loss"], abs=1e-5)  # same init
    # fp32; reduction order differs across layouts (all-reduce, reduce-scatter): ~1e-5 apart.
    assert summary["val_loss"] == pytest.approx(reference["val_loss"], abs=1e-3)
    assert summary["train_loss"] is not None


@pytest.mark.slow  # a 2-process training
def test_meta_init_allocates_only_shards_and_still_learns(reference, tmp_path):
    # parallelism.meta_init (default from 1B parameters): built on the meta device, each rank
    # initialises its own shards, so the numbers differ from single's but the statistics do not.
    summary = train("tp", tmp_path / "run", STEPS, "parallelism.meta_init=true")
    assert summary["initial_val_loss"] == pytest.approx(reference["initial_val_loss"], abs=0.05)
    assert summary["initial_val_loss"] != pytest.approx(reference["initial_val_loss"], abs=1e-5)
    assert summary["val_loss"] < summary["initial_val_loss"] - 0.3
    assert summary["val_loss"] == pytest.approx(reference["val_loss"], abs=0.15)


@pytest.mark.slow  # two trainings, one of them 2 processes
def test_tp_shards_family_options_like_a_single_process(tmp_path):
    """Qwen-style options under TP: q/k/v and o biases split with their columns/added once,
    q/k norms replicated over this rank's heads with their gradients all-reduced."""
    options = ("model.attention_bias=all", "model.qk_norm=true", "model.head_dim=32")
    single = train("single", tmp_path / "single", STEPS, *options)
    tp = train("tp", tmp_path / "tp", STEPS, *options)
    assert single["val_loss"] < single["initial_val_loss"] - 0.3
    assert tp["initial_val_loss"] == pytest.approx(single["initial_val_loss"], abs=1e-5)
    assert tp["val_loss"] == pytest.approx(single["val_loss"], abs=1e-3)
