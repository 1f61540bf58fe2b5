"""bf16 on a CPU that would emulate it: a recipe's or layout's bf16 trains in fp32 with a note; a
precision typed on the command line is kept, with a warning; GPUs and bf16-capable CPUs are
left alone."""
from __future__ import annotations

import pytest

import llmexp
from llmexp.parallel import strategy


@pytest.fixture
def tiny():
    cfg = llmexp.compose(["model=tiny"])  # the tiny recipe's bf16-mixed
    assert cfg.parallelism.precision == "bf16-mixed"
    return cfg


def test_a_recipe_s_bf16_trains_in_fp32_on_a_cpu_without_native_bf16(tiny, monkeypatch, capsys):
    monkeypatch.setattr(strategy, "native_cpu_bf16", lambda: False)
    cfg = strategy.cpu_precision(tiny, "cpu", ["model=tiny"])
    assert cfg.parallelism.precision == "32" and tiny.parallelism.precision == "bf16-mixed"
    out = capsys.readouterr().out.strip()
    assert out.startswith("llmexp: note: training in fp32") and "parallelism.precision=bf16-mixed" in out


def test_a_typed_bf16_is_kept_with_a_warning(tiny, monkeypatch, capsys):
    monkeypatch.setattr(strategy, "native_cpu_bf16", lambda: False)
    cfg = strategy.cpu_precision(tiny, "cpu", ["model=tiny", "parallelism.precision=bf16-mixed"])
    assert cfg.parallelism.precision == "bf16-mixed"
    assert capsys.readouterr().out.startswith("llmexp: warning: parallelism.precision=bf16-mixed on a CPU without native bf16")


@pytest.mark.parametrize("accelerator, native", [("cpu", True), ("gpu", False)])
def test_bf16_capable_devices_keep_the_recipe_s_precision(tiny, monkeypatch, capsys, accelerator, native):
    monkeypatch.setattr(strategy, "native_cpu_bf16", lambda: native)
    assert strategy.cpu_precision(tiny, accelerator, []) is tiny
    assert capsys.readouterr().out == ""
