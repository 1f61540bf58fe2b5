"""Post-training tests: one tiny base model (pretrained in-process for a few steps on
synthetic transcripts), and the stages run in-process from it on the synthetic sort task."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

import llmexp
from llmexp.run import run

# One intra-op thread: on a small shared CPU, torch's thread pool contends with itself and
# other processes; these tiny models run many times faster on one thread.
torch.set_num_threads(1)

MODEL = ["model.name=micro", "model.n_layers=2", "model.d_model=64", "model.n_heads=4", "model.n_kv_heads=4",
         "model.ffn_dim=176", "model.max_seq_len=64", "tokenizer.vocab_size=320"]
SFT_STEPS = 120  # a policy that has learned the task partly: room left for preference and RL stages
# fp32 typed, on every CPU: on one without native bf16 (AVX2) oneDNN emulates
# bf16 and these stages ran ~5x slower (base + SFT 43 s vs 8 s, PPO 127 s vs 17 s); the learning
# margins hold in fp32 (AVX2: GRPO +0.074, PPO +0.094, RLOO +0.106 held-out reward, 0.05 asserted).
FAST = ["trainer.accelerator=cpu", "trainer.seq_len=64", "trainer.micro_batch_size=16",
        "trainer.global_batch_size=16", "trainer.max_tokens=null", "trainer.log_every=5", "trainer.val_batches=4",
        "parallelism.precision=32"]


def base_corpus(path: Path, n: int = 600) -> Path:
    """Transcripts in the task's vocabulary with unsorted answers: the base knows the tokens,
    not the task."""
    rng = random.Random(0)
    with path.open("w") as f:
        for _ in range(n):
            letters = rng.sample("abcdefgh", rng.randint(3, 5))
            other = rng.sample(letters, len(letters))
            f.write(json.dumps({"text": f"user: sort: {' '.join(letters)}\nassistant: {' '.join(other)}\n"}) + "\n")
    return path


def train(overrides: list[str]) -> dict:
    """Compose, validate, derive and run in this process; the run's summary."""
    cfg = llmexp.compose(overrides)
    return run(cfg, llmexp.derive(cfg), overrides)


@pytest.fixture(scope="session")
def base_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("base")
    corpus = base_corpus(folder / "corpus.jsonl")
    run_dir = folder / "run"
    train([*MODEL, *FAST, "data=jsonl", f"data.sources.0.path={corpus}", "trainer.max_steps=40",
           "trainer.val_every=40", "optimizer.lr=3e-3", f"run_dir={run_dir}"])
    return run_dir


def sft_overrides(base: Path, run_dir: Path, steps: int, *extra: str) -> list[str]:
    return [*FAST, "stage=sft", f"init_from={base}", "stage.dataset=synthetic:sort", f"trainer.max_steps={steps}",
            f"trainer.val_every={steps}", "optimizer.lr=3e-3", "optimizer.warmup_steps=10", f"run_dir={run_dir}", *extra]


@pytest.fixture(scope="session")
def sft_run(base_run, tmp_path_factory) -> Path:
    """The SFT policy the preference and RL stages start from."""
    run_dir = tmp_path_factory.mktemp("sft") / "run"
    train(sft_overrides(base_run, run_dir, SFT_STEPS))
    return run_dir
