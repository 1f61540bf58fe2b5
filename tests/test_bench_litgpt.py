"""scripts/bench_litgpt.py without LitGPT: the llmexp command composes to the benchmark's shape,
both tools' metrics files parse to per-step losses and rates, and the venv failure is one line."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

import llmexp

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("bench_litgpt", REPO / "scripts" / "bench_litgpt.py")
bench = importlib.util.module_from_spec(spec)
sys.modules["bench_litgpt"] = bench  # dataclasses look their module up there
spec.loader.exec_module(bench)


def test_llmexp_command_composes_to_the_litgpt_shape(tmp_path):
    cmd = bench.llmexp_command("bf16-mixed:compile", 20, 3e-3, 10, tmp_path, "bench")
    assert cmd[1:3] == ["-m", "llmexp"]
    cfg = llmexp.compose(cmd[3:])
    m = cfg.model
    assert (m.n_layers, m.d_model, m.n_heads, m.n_kv_heads, m.ffn_dim, m.tie_embeddings) == (4, 256, 4, 4, 704, False)
    assert (cfg.trainer.seq_len, cfg.trainer.micro_batch_size, cfg.trainer.global_batch_size) == (256, 8, 8)
    assert cfg.parallelism.precision == "bf16-mixed" and cfg.parallelism.compile is True
    assert cfg.tokenizer.vocab_size == 4096 and cfg.optimizer.lr == 3e-3 and cfg.trainer.log_every == 1


def test_litgpt_config_names_the_same_model_and_schedule(tmp_path):
    text = bench.litgpt_config("32:eager", 20, 3e-3, 10, tmp_path, tmp_path / "t.npy", tmp_path / "v.npy")
    for line in ("n_layer: 4", "n_embd: 256", "n_head: 4", "intermediate_size: 704", "padded_vocab_size: 4096",
                 "precision: 32-true", "max_tokens: 40960", "lr_warmup_steps: 10", "tie_embeddings: false",
                 "max_norm: 1.0", "mlp_class_name: LLaMAMLP"):
        assert line in text, line


def test_metrics_parse_to_steady_state_rates(tmp_path):
    ours = tmp_path / "ours.csv"
    ours.write_text("epoch,step,throughput/tokens_per_s,train/loss,val/loss\n0,0,,,8.37\n0,0,,8.39,\n"
                    "0,1,1000.0,8.2,\n0,2,3000.0,8.0,\n0,3,2000.0,7.9,\n")
    run = bench.parse_llmexp(ours)
    assert run.losses == [8.39, 8.2, 8.0, 7.9] and run.tokens_per_s[0] is None
    assert run.steady(2) == 2500.0
    theirs = tmp_path / "theirs.csv"
    theirs.write_text("iter,loss,time\n1,8.5,10.0\n2,8.4,11.0\n3,8.3,11.5\n4,8.2,12.5\n")
    run = bench.parse_litgpt(theirs, 2048)
    assert run.losses == [8.5, 8.4, 8.3, 8.2] and run.tokens_per_s == [None, 2048.0, 4096.0, 2048.0]
    assert run.steady(1) == 2048.0
    with pytest.raises(ValueError, match="no timed step"):
        run.steady(4)


def test_unbuildable_venv_fails_with_one_line(tmp_path, monkeypatch):
    calls = []

    def fake_run(cmd, capture_output, text):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "noise\nERROR: No matching distribution found for litgpt==0.5.13")

    monkeypatch.setattr(bench.subprocess, "run", fake_run)
    with pytest.raises(SystemExit) as exit_:
        bench.build_venv(tmp_path / "venv", "2.13.0")
    message = str(exit_.value)
    assert "\n" not in message and "cannot build the LitGPT venv" in message and "No matching distribution" in message
