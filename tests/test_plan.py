"""The derive pass: budgets, FLOPs, memory and the documented JSON, all without torch."""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

import llmexp

README = Path(__file__).resolve().parents[1] / "README.md"


def test_chinchilla_budget_is_20_tokens_per_parameter_and_says_so():
    plan = llmexp.derive(llmexp.compose(["model=7b", "tokenizer=bpe_32k"]))
    assert plan.tokens == plan.steps * 1024 * 4096
    assert plan.tokens >= 20 * plan.params_total > plan.tokens - plan.tokens_per_step
    assert "chinchilla" in plan.budget_source and "20 tokens/param" in plan.budget_source


def test_whichever_budget_is_reached_first_wins():
    cfg = llmexp.compose(["trainer.max_steps=10", "trainer.max_tokens=491520"])
    plan = llmexp.derive(cfg)
    assert plan.steps == 10 and "max_steps" in plan.budget_source
    both = llmexp.compose(["trainer.max_steps=100000", "trainer.max_tokens=491520"])
    assert llmexp.derive(both).steps == math.ceil(491520 / 4096)


def test_typed_budget_beats_the_recipes():
    """The tiny recipe sets max_tokens; a typed max_steps replaces it instead of racing it."""
    cfg = llmexp.compose(["trainer.max_steps=500"])
    assert cfg.trainer.max_tokens is None and llmexp.derive(cfg).steps == 500
    assert llmexp.compose(["trainer.max_tokens=8192"]).trainer.max_steps is None


def test_typed_group_beats_the_recipes_batch():
    """`trainer=debug` typed: its batch sizes, not the tiny recipe's 16 x 16."""
    cfg = llmexp.compose(["trainer=debug"])
    assert (cfg.trainer.micro_batch_size, cfg.trainer.global_batch_size, cfg.trainer.max_steps) == (4, 8, 20)
    assert cfg.trainer.max_tokens is None
    assert cfg.optimizer.lr == 3e-3  # the recipe's lr stays: the optimizer group was not typed
    assert llmexp.compose([]).trainer.micro_batch_size == 16  # nothing typed: the recipe's


def test_plan_says_where_budget_and_batch_came_from():
    from llmexp.config.compose import compose_dictconfig

    sources: dict = {}
    compose_dictconfig(["trainer=debug", "trainer.max_steps=7"], sources=sources)
    assert sources["trainer.max_steps"] == "7 (command line)"
    assert sources["trainer.micro_batch_size"] == "4 (trainer=debug (command line))"
    assert sources["optimizer.lr"] == "0.003 (recipe tiny)"


def test_flops_per_token_is_6n_plus_attention():
    cfg = llmexp.compose(["model=7b", "tokenizer=bpe_32k"])
    plan = llmexp.derive(cfg)
    m = cfg.model
    matmul = plan.params_non_embedding + plan.vocab_size * m.d_model
    assert plan.flops_per_token == 6 * matmul + 12 * m.n_layers * m.d_model * 4096


def test_memory_breakdown_follows_precision_and_checkpointing():
    fp32 = llmexp.derive(llmexp.compose(["model=1b", "parallelism.precision=32"]))
    assert fp32.memory.weights == 4 * fp32.params_total and fp32.memory.optimizer == 8 * fp32.params_total
    true_bf16 = llmexp.derive(llmexp.compose(["model=1b", "parallelism.precision=bf16-true"]))
    assert true_bf16.memory.weights == 2 * true_bf16.params_total
    ckpt = llmexp.derive(llmexp.compose(["model=1b", "parallelism.activation_checkpointing=true"]))
    assert ckpt.memory.activations_checkpointed < ckpt.memory.activations / 4
    assert ckpt.memory.total < fp32.memory.total


def test_gradient_accumulation_is_derived():
    plan = llmexp.derive(llmexp.compose(["model=125m", "trainer.micro_batch_size=4", "trainer.global_batch_size=64",
                                         "trainer.devices=2", "parallelism=ddp"]))
    assert plan.grad_accumulation == 8 and plan.world_size == 2


def test_long_warmup_is_a_warning_in_the_plan():
    plan = llmexp.derive(llmexp.compose(["trainer.max_steps=10"]))
    assert any("warmup_steps=20" in w for w in plan.warnings)


def test_time_estimate_uses_the_named_accelerator_and_mfu():
    a = llmexp.derive(llmexp.compose(["model=7b", "plan.accelerator=a100", "plan.mfu=0.5"]))
    b = llmexp.derive(llmexp.compose(["model=7b", "plan.accelerator=h100", "plan.mfu=0.5"]))
    assert a.estimated_seconds == pytest.approx(a.total_flops / (312e12 * 0.5))
    assert a.estimated_seconds > 3 * b.estimated_seconds


def test_dry_run_json_has_the_documented_keys_and_imports_nothing_heavy():
    code = ("import sys, llmexp.cli as c\nc.main(['model=7b', 'tokenizer=bpe_32k', 'dry_run=json'])\n"
            "print('HEAVY', [m for m in ('torch', 'lightning') if m in sys.modules], file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "HEAVY []" in out.stderr
    plan = json.loads(out.stdout)
    assert plan["params_total"] == 6_738_415_616
    documented = re.search(r"`model, stage, vocab_size.*?warnings`", README.read_text(), re.S).group(0)
    keys = {k.strip(" `\n") for k in re.sub(r"memory\{[^}]*\}( \([^)]*\))?", "memory", documented).split(",")}
    assert keys == set(plan), keys ^ set(plan)
    assert set(plan["memory"]) == {"weights", "gradients", "optimizer", "activations", "activations_checkpointed",
                                   "activation_checkpointing", "gathered", "accumulated_gradients", "total"}


def test_human_plan_names_every_quantity():
    out = subprocess.run([sys.executable, "-m", "llmexp", "model=7b", "dry_run=true"], capture_output=True, text=True)
    for word in ("parameters", "non-embedding", "FLOPs/token", "steps", "tokens", "total FLOPs", "memory/device",
                 "weights", "gradients", "optimizer", "activations", "time estimate", "MFU"):
        assert word in out.stdout, word
