"""Shared fixtures: an isolated cache per test session, and a way to run the real CLI."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Tokenizers and token caches go to a fresh folder: tests never see a user's cache."""
    cache = tmp_path_factory.mktemp("llmexp-cache")
    old = os.environ.get("LLMEXP_CACHE")
    os.environ["LLMEXP_CACHE"] = str(cache)
    os.environ.setdefault("WANDB_MODE", "offline")
    yield cache
    if old is None:
        os.environ.pop("LLMEXP_CACHE", None)
    else:
        os.environ["LLMEXP_CACHE"] = old


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m llmexp args...` in a subprocess, as a user would run it (`env`: extra variables)."""
    return subprocess.run(
        [sys.executable, "-m", "llmexp", *args], capture_output=True, text=True, timeout=timeout,
        cwd=cwd or REPO, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )


# A small, fast variant of the embedded default for training tests (seconds, not minutes).
FAST_TRAINING = [
    "model.n_layers=2", "model.d_model=128", "model.n_heads=4", "model.n_kv_heads=2", "model.ffn_dim=352",
    "trainer.seq_len=128", "tokenizer.vocab_size=1024", "trainer.micro_batch_size=16",
    "trainer.global_batch_size=16", "trainer.max_tokens=null",
]
