"""IsoFLOP study design and its three launch formats; every run is a config llmexp validates
and plans with the designed N and D."""
from __future__ import annotations

import shlex

import pytest
import yaml

import llmexp
from llmexp.scaling import ScalingError
from llmexp.scaling.emit import commands, multirun_script, sweep, sweep_yaml, write_launchers
from llmexp.scaling.study import StudySpec, budget_tag, design, load
from tests.scaling.conftest import FAST_STUDY


def test_runs_spend_their_budget_at_exact_flops(small_study):
    s = small_study
    assert len(s.runs) == 6 and len({r.id for r in s.runs}) == 6
    for run in s.runs:
        steps_tokens = run.global_batch_size * s.seq_len
        # Whole steps: the compute is the budget to within half a step's FLOPs.
        assert abs(run.flops - run.budget) <= 0.5 * steps_tokens * run.flops_per_token
        assert run.tokens == run.steps * steps_tokens and run.lr == 3e-3
        assert run.warmup_steps == round(0.1 * run.steps)
    by_budget = {}
    for run in s.runs:
        by_budget.setdefault(run.budget, []).append(run.params)
    assert all(sorted(v) == v and len(set(v)) == 3 for v in by_budget.values())


def test_each_run_is_one_model_option_that_composes_to_its_design(small_study):
    s = small_study
    for run in s.runs:
        cfg = llmexp.compose([f"model={run.id}", *s.overrides], config_dirs=[s.conf_dir])
        plan = llmexp.derive(cfg)
        assert (plan.params_total, plan.tokens, plan.flops_per_token) == (run.params, run.tokens, run.flops_per_token)
        assert cfg.run_dir == str(s.run_dir(run)) and cfg.name == run.id
        assert cfg.optimizer.lr == run.lr and cfg.trainer.global_batch_size == run.global_batch_size


def test_study_round_trips_through_study_json(small_study):
    again = load(small_study.root)
    assert again.runs == small_study.runs and again.spec == small_study.spec and again.vocab_size == 1024


def test_wandb_sweep_keeps_each_n_d_pair_together(small_study):
    sw = sweep(small_study)
    assert sw["method"] == "grid" and sw["metric"] == {"name": "val/loss", "goal": "minimize"}
    assert sw["command"][:4] == ["${env}", "python", "-m", "llmexp"] and sw["command"][-1] == "${args_no_hyphens}"
    assert sw["command"][4:7] == ["--config-dir", str(small_study.conf_dir), "logger=wandb"]
    assert sw["parameters"]["model"]["values"] == [r.id for r in small_study.runs]
    assert sw["parameters"]["trainer.seq_len"] == {"value": 128}
    assert yaml.safe_load(sweep_yaml(small_study)) == sw
    # What a W&B agent runs for one grid point, as ${args_no_hyphens} renders it: a valid run.
    args = [f"{k}={v['values'][2] if 'values' in v else v['value']}" for k, v in sw["parameters"].items()]
    plan = llmexp.derive(llmexp.compose(args, config_dirs=[small_study.conf_dir]))
    assert plan.tokens == small_study.runs[2].tokens
    assert "\n- ${args_no_hyphens}\n" in sweep_yaml(small_study)  # a block list, as W&B wants


def test_the_sweep_tool_accepts_the_emitted_sweep(small_study):
    check = pytest.importorskip("llmexp.sweep.check")
    from llmexp.sweep.sweepfile import load_sweep

    path = write_launchers(small_study)["sweep.yaml"]
    assert check.check_sweep(load_sweep(path)).combinations == len(small_study.runs)


def test_multirun_script_and_commands(small_study):
    s = small_study
    script = multirun_script(s)
    line = next(l for l in script.splitlines() if l.startswith("python"))
    argv = shlex.split(line)
    assert argv[:4] == ["python", "-m", "llmexp", "-m"]
    assert f"model={','.join(r.id for r in s.runs)}" in argv and "trainer.seq_len=128" in argv
    lines = [l for l in commands(s).splitlines() if not l.startswith("#")]
    assert len(lines) == 6 and shlex.split(lines[0])[5] == f"model={s.runs[0].id}"
    written = write_launchers(s)
    assert set(written) == {"sweep.yaml", "multirun.sh", "commands.txt"} and all(p.is_file() for p in written.values())


def test_sizes_around_a_law_and_rules_of_the_budget(tmp_path):
    spec = StudySpec("auto", [1e12, 1e13], sizes=None, sizes_per_budget=3, span=16, lr="deepseek",
                     batch_tokens="deepseek", overrides=list(FAST_STUDY))
    s = design(tmp_path / "auto", spec)
    lrs = {r.budget: r.lr for r in s.runs}
    assert lrs[1e12] == pytest.approx(0.3118 * 1e12**-0.125) and lrs[1e13] < lrs[1e12]
    batches = {r.budget: r.global_batch_size for r in s.runs}
    assert batches[1e13] > batches[1e12]
    assert max(r.params for r in s.runs if r.budget == 1e13) > max(r.params for r in s.runs if r.budget == 1e12)


@pytest.mark.parametrize("change, message", [
    ({"budgets": []}, "at least one budget"),
    ({"budgets": [1e12, -1.0]}, "must be a finite number of FLOPs"),
    ({"overrides": ["optimizer.lr=1e-3"]}, "optimizer.lr is set per run"),
    ({"overrides": ["trainer.max_tokens=5"]}, "trainer.max_tokens is set per run"),
    ({"overrides": ["model.n_layers"]}, "expected key=value"),
    ({"overrides": ["trainer.micro_batch_size=zero"]}, "trainer.micro_batch_size"),
    ({"budgets": [1e6]}, "less than one step"),
    ({"lr": "fast"}, "expected a positive number"),
])
def test_bad_study_input_is_one_clear_error(tmp_path, change, message):
    spec = StudySpec("bad", [1e12], sizes=[3e5], overrides=list(FAST_STUDY))
    for key, value in change.items():
        setattr(spec, key, value)
    with pytest.raises(ScalingError, match=message):
        design(tmp_path / "bad", spec)
    assert not (tmp_path / "bad").exists()  # no half-written study left behind


def test_a_study_folder_is_not_overwritten(small_study):
    with pytest.raises(ScalingError, match="already holds a study"):
        design(small_study.root, small_study.spec)


def test_budget_tags():
    assert [budget_tag(c) for c in (1e13, 2.5e13, 1.2e14, 6e18)] == ["1e13", "25e12", "12e13", "6e18"]
