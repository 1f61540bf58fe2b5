"""Pipeline parallelism and HSDP train like one process (gloo on the CPU, processes started by
Lightning): per-step training loss equal to single's within 1e-5 for every schedule, fsdp x pp
and hsdp; checkpoints resume from a pipeline into a single process and back."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from llmexp.parallel.checkpoint import is_distributed_checkpoint
from tests.parallel.conftest import train

STEPS = 6
UNTIED = ["model.tie_embeddings=false"]  # a cut model cannot tie the first stage's table to the last's
FOUR_LAYERS = ["model.n_layers=4"]  # interleaved: 2 ranks x 2 stages each


def step_losses(run_dir: Path) -> list[float]:
    """train/loss of every optimizer step, in order, from the run's metrics.csv (a resumed run
    appends its steps)."""
    with open(run_dir / "metrics.csv") as f:
        return [float(row["train/loss"]) for row in csv.DictReader(f) if row.get("train/loss")]


def assert_same_run(run_dir: Path, summary: dict, reference_dir: Path, reference: dict) -> None:
    losses, expected = step_losses(run_dir), step_losses(reference_dir)
    assert len(losses) == len(expected) == STEPS
    assert losses == pytest.approx(expected, abs=1e-5)
    assert summary["val_loss"] == pytest.approx(reference["val_loss"], abs=1e-5)
    assert reference["val_loss"] < reference["initial_val_loss"] - 0.3  # it learned: the check has teeth


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("single") / "run"
    return run_dir, train("single", run_dir, STEPS, *UNTIED)


@pytest.fixture(scope="module")
def single_four_layers(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("single4") / "run"
    return run_dir, train("single", run_dir, STEPS, *UNTIED, *FOUR_LAYERS)


# ~25 s, kept in the default suite: the one pipeline test every run of the suite sees
def test_1f1b_pipeline_over_two_ranks_trains_like_one_process(single, tmp_path):
    # 2 micro-batches of 4 per step through 2 stages of one block each (embedding on the first,
    # norm and output projection on the second)
    summary = train("pp", tmp_path / "run", STEPS, *UNTIED, "parallelism.pp_schedule=1f1b")
    assert summary["initial_val_loss"] == pytest.approx(single[1]["initial_val_loss"], abs=1e-6)  # same weights
    assert_same_run(tmp_path / "run", summary, *single)


@pytest.mark.slow  # a 2-process training
def test_gpipe_pipeline_trains_like_one_process(single, tmp_path):
    summary = train("pp", tmp_path / "run", STEPS, *UNTIED, "parallelism.pp_schedule=gpipe")
    assert_same_run(tmp_path / "run", summary, *single)


@pytest.mark.slow  # two trainings, one of them 2 processes
def test_interleaved_1f1b_with_two_stages_per_rank_trains_like_one_process(single_four_layers, tmp_path):
    # 4 stages of one block: rank 0 runs stages 0 and 2, rank 1 stages 1 and 3
    summary = train("pp", tmp_path / "run", STEPS, *UNTIED, *FOUR_LAYERS,
                    "parallelism.pp_schedule=interleaved_1f1b", "parallelism.pp_stages_per_rank=2")
    assert_same_run(tmp_path / "run", summary, *single_four_layers)


@pytest.mark.slow  # two trainings, one of them 2 processes
def test_explicit_split_points_cut_uneven_stages(single_four_layers, tmp_path):
    summary = train("pp", tmp_path / "run", STEPS, *UNTIED, *FOUR_LAYERS, "parallelism.pp_split_points=[1]")
    assert_same_run(tmp_path / "run", summary, *single_four_layers)


@pytest.mark.slow  # 4 processes on 2 cores, and a reference
def test_fsdp_x_pp_2x2_trains_like_one_process(tmp_path):
    # fsdp_pp runs micro-batches of 2 (2 per data-parallel rank and step): the reference reads the
    # same validation batches (val_batches x micro_batch_size); its training loss is the same either way
    reference = train("single", tmp_path / "single", STEPS, *UNTIED, "trainer.micro_batch_size=2")
    summary = train("fsdp_pp", tmp_path / "run", STEPS, *UNTIED)
    assert_same_run(tmp_path / "run", summary, tmp_path / "single", reference)


@pytest.mark.slow  # a 2-process training
@pytest.mark.parametrize("shard", [
    1,  # 2 replicas x shard 1: plain replication through FSDP2's 2-D mesh
    2,  # 1 replica x shard 2
])
def test_hsdp_trains_like_one_process(shard, single, tmp_path):
    summary = train("hsdp", tmp_path / "run", STEPS, *UNTIED, f"parallelism.shard_size={shard}")
    assert_same_run(tmp_path / "run", summary, *single)


@pytest.mark.slow  # two trainings per case, the pipeline one 2 processes (4 for fsdp_tp_pp)
@pytest.mark.parametrize("first, then", [("pp", "single"), ("single", "pp"), ("fsdp_tp_pp", "single")])
def test_resume_between_pipeline_and_single_matches_an_uninterrupted_run(first, then, single, tmp_path):
    run_dir = tmp_path / "run"
    train(first, run_dir, 3, *UNTIED)
    assert is_distributed_checkpoint(run_dir / "checkpoints" / "last.ckpt") == (first != "single")
    resumed = train(then, run_dir, STEPS, *UNTIED)  # the same folder, more steps, another layout
    assert resumed["steps"] == STEPS
    assert_same_run(run_dir, resumed, *single)  # steps 1-3 under one layout, 4-6 under the other


@pytest.mark.slow  # a 2-process run
def test_meta_initialised_pipeline_loads_init_from_weights_into_its_stages(single, tmp_path):
    # each stage allocates only its blocks, then loads them by name from the full checkpoint
    summary = train("pp", tmp_path / "run", 1, *UNTIED, "parallelism.meta_init=true", f"init_from={single[0]}")
    assert summary["initial_val_loss"] == pytest.approx(single[1]["val_loss"], abs=1e-5)


@pytest.mark.slow  # 4 processes on 2 cores, and a reference
def test_fsdp_tp_pp_2x2_trains_like_one_process(single, tmp_path):
    # tp 2 x pp 2 (dp 1): each stage's TP plan on its modules, FSDP2 over a one-rank mesh; the
    # stages pass each TP rank's half of the sequence to the next stage's same TP rank
    summary = train("fsdp_tp_pp", tmp_path / "run", STEPS, *UNTIED)
    assert summary["initial_val_loss"] == pytest.approx(single[1]["initial_val_loss"], abs=1e-6)  # same weights
    assert_same_run(tmp_path / "run", summary, *single)
