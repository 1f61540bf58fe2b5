"""Synthetic scaling data drawn from a known law, and small studies laid out on disk."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

# `pytest` (not `python -m pytest`) in a checkout where llmexp is not installed: import it from here.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from llmexp.scaling.laws import ParametricLaw  # noqa: E402


def noisy_points(law: ParametricLaw, n: int, noise: float, seed: int = 0):
    """n runs with N log-uniform in [1e7, 1e10] and 1..200 tokens per parameter; the loss is
    the law's times log-normal noise of relative size `noise`."""
    rng = np.random.default_rng(seed)
    N = np.exp(rng.uniform(np.log(1e7), np.log(1e10), n))
    D = N * np.exp(rng.uniform(0.0, np.log(200.0), n))
    return N, D, law.loss(N, D) * np.exp(rng.normal(0.0, noise, n))


def isoflop_points(law: ParametricLaw, budgets, sizes: int, noise: float, seed: int = 0, span: float = 16.0):
    """IsoFLOP grids (C = 6ND) centred on the law's own optimum at each budget."""
    rng = np.random.default_rng(seed)
    B, N, D, L = [], [], [], []
    for C in budgets:
        centre, _ = law.optimal(C)
        for n in centre * span ** np.linspace(-0.5, 0.5, sizes):
            d = C / (6 * n)
            B.append(C), N.append(n), D.append(d), L.append(law.loss(n, d) * np.exp(rng.normal(0.0, noise)))
    return tuple(np.array(x) for x in (B, N, D, L))


def write_summary(study, run, **fields) -> Path:
    """What llmexp leaves in a finished run folder (docs/run-contract.md), with `fields` changed."""
    folder = study.run_dir(run)
    folder.mkdir(parents=True, exist_ok=True)
    summary = {"status": "finished", "val_loss": 5.0, "initial_val_loss": 8.3, "tokens": run.tokens,
               "params_total": run.params, "flops_per_token": run.flops_per_token, "total_flops": run.flops,
               "steps": run.steps, "run_dir": str(folder), **fields}
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


# Study-wide overrides that make a run take seconds on a CPU: the tiny family at sequence 128
# with a 1024-token BPE, one validation batch, no checkpoint until the end.
FAST_STUDY = ["trainer.accelerator=cpu", "trainer.num_workers=0", "trainer.seq_len=128", "tokenizer.vocab_size=1024",
              "trainer.micro_batch_size=4", "trainer.val_batches=1", "trainer.val_every=1000",
              "trainer.checkpoint_every=1000", "trainer.log_every=5"]


@pytest.fixture(scope="session")
def designed_study(tmp_path_factory):
    """A designed (not run) study: 2 budgets x 3 sizes of the tiny family (composing each run
    takes a while, so it is designed once and copied per test)."""
    from llmexp.scaling.study import StudySpec, design

    spec = StudySpec("small", [2e11, 6e11], sizes=[1.2e5, 5e5, 1.4e6], batch_tokens="1024", overrides=list(FAST_STUDY))
    return design(tmp_path_factory.mktemp("designed") / "study", spec)


@pytest.fixture
def small_study(designed_study, tmp_path):
    from llmexp.scaling.study import load

    shutil.copytree(designed_study.root, tmp_path / "study")
    return load(tmp_path / "study")
