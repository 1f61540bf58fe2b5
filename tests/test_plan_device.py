"""The planner knows the device: memory per device against the accelerator's (or the CPU's)
capacity, a warning when it does not fit, and parallelism=auto's choice of layout,
activation checkpointing and micro-batch, with the reason."""
from __future__ import annotations

import json
import subprocess
import sys

import psutil
import pytest

import llmexp
from llmexp.plan import FIT, format_plan, layout_of, resolve_auto

GiB = 2**30


def _dry_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llmexp", *args], capture_output=True, text=True, timeout=60)


def test_readme_fsdp_example_warns_that_it_does_not_fit_an_h100():
    out = _dry_run("model=1b", "parallelism=fsdp", "trainer.devices=8", "dry_run=true")
    assert out.returncode == 0, out.stderr
    assert "118.55 GiB  of 80.0 GiB on h100" in out.stdout
    assert "warning: needs 118.5 GiB per device but h100 has 80.0 GiB" in out.stdout
    plan = json.loads(_dry_run("model=1b", "parallelism=fsdp", "trainer.devices=8", "dry_run=json").stdout)
    assert plan["device_memory"] == 80 * GiB and any("118.5 GiB" in w for w in plan["warnings"])
    on_h200 = llmexp.derive(llmexp.compose(["model=1b", "parallelism=fsdp", "trainer.devices=8", "plan.accelerator=h200"]))
    assert not any("per device" in w for w in on_h200.warnings)  # 118.5 GiB fits 90% of 141 GiB


def test_auto_turns_on_checkpointing_where_fsdp_alone_does_not_fit():
    common = ["model=70b", "trainer.devices=8", "trainer.num_nodes=8"]
    fsdp = llmexp.derive(llmexp.compose([*common, "parallelism=fsdp"]))
    assert fsdp.memory.total / GiB == pytest.approx(154.1, abs=0.1) and fsdp.warnings
    full = llmexp.derive(llmexp.compose([*common, "parallelism=fsdp", "parallelism.activation_checkpointing=true",
                                         "parallelism.activation_checkpointing_mode=full"]))
    assert full.memory.total / GiB == pytest.approx(34.5, abs=0.1) and not full.warnings
    auto = llmexp.derive(llmexp.compose(common))
    assert auto.memory.total <= FIT * 80 * GiB and not auto.warnings
    assert auto.memory.activation_checkpointing and "the cheapest that fits" in auto.layout_reason
    assert auto.layout_reason in format_plan(auto)
    shown = _dry_run(*common, "dry_run=true").stdout  # docs/parallelism.md's example
    assert "layout        fsdp_tp (dp 32 x tp 2), activation checkpointing selective" in shown


def test_auto_halves_the_micro_batch_and_the_run_builds_what_was_planned():
    cfg = llmexp.compose(["model=1b", "trainer.micro_batch_size=32", "trainer.global_batch_size=256"])
    plan = llmexp.derive(cfg)
    assert plan.micro_batch_size < 32 and plan.grad_accumulation == 256 // plan.micro_batch_size
    assert plan.memory.total <= FIT * 80 * GiB
    resolved = resolve_auto(cfg)  # what run.py builds
    assert resolved.trainer.micro_batch_size == plan.micro_batch_size
    assert resolved.parallelism.activation_checkpointing == plan.memory.activation_checkpointing
    again = llmexp.derive(resolved)  # the choice is a fixed point
    assert (again.memory.total, again.strategy, layout_of(resolved)) == (plan.memory.total, plan.strategy, layout_of(cfg))


def test_auto_keeps_a_fitting_config_as_it_is():
    cfg = llmexp.compose(["model=125m", "trainer.devices=8", "trainer.global_batch_size=64"])
    plan = llmexp.derive(cfg)
    assert (plan.strategy, plan.micro_batch_size, plan.memory.activation_checkpointing) == ("ddp", 8, False)
    assert "the cheapest option" in plan.layout_reason


def test_a_cpu_run_is_planned_on_the_cpu_and_its_ram():
    plan = llmexp.derive(llmexp.compose(["trainer.accelerator=cpu"]))
    assert plan.accelerator == "cpu" and plan.device_memory == psutil.virtual_memory().total
    text = format_plan(plan)
    assert "on 1 x cpu" in text and "h100" not in text
    two = llmexp.derive(llmexp.compose(["trainer.accelerator=cpu", "trainer.devices=2", "parallelism=ddp",
                                       "trainer.global_batch_size=32"]))
    assert two.device_memory == psutil.virtual_memory().total / 2  # processes share the RAM
    huge = llmexp.derive(llmexp.compose(["trainer.accelerator=cpu", "model=70b", "parallelism=single"]))
    assert any("but cpu has" in w for w in huge.warnings)


def test_the_plan_imports_psutil_only_for_a_cpu_plan():
    code = ("import sys, llmexp\nllmexp.derive(llmexp.compose(['model=7b']))\nprint('psutil' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
