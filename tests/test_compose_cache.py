"""Composition is cached (config-override tests compose hundreds of times): whatever a
process composed before, each composition equals a fresh one, and errors stay the same."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import llmexp
from llmexp.config import compose as composing
from llmexp.config.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
from bench_compose import override_sets  # noqa: E402  (the benchmark's own override sets)


def _fresh(overrides: list[str]):
    composing._compose_defaults.cache_clear()
    composing._group_repository.cache_clear()
    return llmexp.compose(overrides)


def test_every_cached_composition_equals_a_fresh_one():
    sets = override_sets(42) + [["model=7b", "model.n_layers=2", "experiment=chat_pipeline", "trainer.max_steps=3"], ["~eval"]]
    cached = []
    for overrides in sets:  # warm: value overrides applied to copies of cached group compositions
        cached.append(llmexp.compose(overrides))
    cached.append(llmexp.compose([]))  # nothing an earlier override set changed leaks into a later one
    for overrides, cfg in zip(sets + [[]], cached):
        fresh = _fresh(overrides)
        assert cfg == fresh, overrides
        assert llmexp.derive(cfg) == llmexp.derive(fresh), overrides


@pytest.mark.parametrize("overrides,message", [
    (["model.n_layerz=2"], "model.n_layerz"), (["model=nope"], "unknown option"), (["trainer.devices=abc"], "trainer.devices"),
])
def test_errors_are_the_same_cached_or_not(overrides, message):
    llmexp.compose([])  # warm the cache
    with pytest.raises(ConfigError) as cached:
        llmexp.compose(overrides)
    with pytest.raises(ConfigError) as fresh:
        _fresh(overrides)
    assert str(cached.value) == str(fresh.value) and message in str(cached.value)


def test_benchmark_prints_the_figures():
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_compose.py"), "--calls", "20"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "first call" in out.stdout and "median" in out.stdout
