"""WSD cooldown branches: several (N, D) points from one run. Each branch's learning rate
follows the full run's until its own decay starts (so it is the full run, cooled down early),
trunks checkpoint where the branches resume, and the runner runs every link after the one it
resumes; the branches are points for approach 3, the full-length ones for approach 2 too."""
from __future__ import annotations

import json

import llmexp
import pytest
from llmexp.optim import lr_multiplier
from llmexp.scaling import ScalingError
from llmexp.scaling.results import collect
from llmexp.scaling.study import StudySpec, design, load
from tests.scaling.conftest import FAST_STUDY
from tests.scaling.test_scaling_cli import scaling

# The fast study's overrides but checkpoint_every, which a cooldown study sets per trunk.
WSD = ["optimizer=adamw_wsd", *(o for o in FAST_STUDY if not o.startswith("trainer.checkpoint_every"))]


def _composed(study, run):
    """The config the run's command line composes (but resume=, whose folder is not there yet)."""
    return llmexp.compose([f"model={run.id}", *study.overrides], config_dirs=[study.conf_dir])


def test_branches_follow_the_full_run_until_their_own_decay(tmp_path):
    study = design(tmp_path / "s", StudySpec("cd", [6e11], sizes=[1.2e5], batch_tokens="1024", overrides=WSD,
                                             cooldowns=[0.25, 0.5]))
    runs = {r.id: r for r in study.runs}
    full = next(r for r in study.runs if r.role == "branch" and r.budget)
    full_cfg = _composed(study, full)
    assert [r.role for r in study.runs] == ["trunk", "branch"] * 3
    for run in study.runs:
        cfg = _composed(study, run)
        if run.role == "trunk":
            assert cfg.optimizer.schedule == "constant" and cfg.trainer.checkpoint_every == run.steps
            continue
        trunk = runs[run.after]
        assert study.command(run)[-1] == f"resume={study.run_dir(trunk)}" and cfg.optimizer.schedule == "wsd"
        # Identical learning rate to the full run up to the trunk's end, then its own decay to the floor.
        for step in range(trunk.steps):
            assert lr_multiplier(step, run.steps, cfg.optimizer) == lr_multiplier(step, full.steps, full_cfg.optimizer)
        assert lr_multiplier(trunk.steps, run.steps, cfg.optimizer) < 1.0
        assert lr_multiplier(run.steps - 1, run.steps, cfg.optimizer) == pytest.approx(cfg.optimizer.min_lr_ratio)
    assert [r.budget for r in study.runs if r.role == "branch"] == [None, None, 6e11]


def test_cooldowns_need_a_wsd_schedule_and_fractions_below_1(tmp_path):
    with pytest.raises(ScalingError, match="optimizer=adamw_wsd"):
        design(tmp_path / "a", StudySpec("x", [6e11], sizes=[1.2e5], overrides=WSD[1:], cooldowns=[0.5]))
    with pytest.raises(ScalingError, match=r"each in \(0, 1\)"):
        design(tmp_path / "b", StudySpec("x", [6e11], sizes=[1.2e5], overrides=WSD, cooldowns=[1.5]))
    with pytest.raises(ScalingError, match="resume is set per run"):
        design(tmp_path / "c", StudySpec("x", [6e11], sizes=[1.2e5], overrides=[*WSD, "resume=x"], cooldowns=[0.5]))


def test_cooldown_study_from_the_command_line_emits_commands_in_order(tmp_path):
    out = tmp_path / "study"
    r = scaling("isoflop", "--budgets", "3e10", "--sizes", "1.2e5", "--batch-tokens", "512", "--cooldowns", "0.5",
                "--out", str(out), *WSD)
    assert r.returncode == 0, r.stderr
    assert "(resumes c3e10-tiny-d64-l1-s" in r.stdout and "each link after the one it resumes" in r.stdout
    lines = [l for l in (out / "commands.txt").read_text().splitlines() if not l.startswith("#")]
    assert len(lines) == 4 and "resume=" not in lines[0] and all("resume=" in l for l in lines[1:])
    assert not (out / "sweep.yaml").exists()


@pytest.mark.slow
def test_cooldown_study_runs_and_gives_two_points_per_run(tmp_path):
    """Trunks and branches train for real (resume into a new run folder); collect() gives each
    size two points, with the losses of the branch cooled down early above the full run's."""
    out = tmp_path / "study"
    r = scaling("isoflop", "--budgets", "3e10", "--sizes", "1.2e5,5e5,1.4e6", "--batch-tokens", "512",
                "--cooldowns", "0.5", "--out", str(out), *WSD)
    assert r.returncode == 0, r.stderr
    r = scaling("run", str(out), "--jobs", "2", timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    study = load(out)
    for run in study.runs:
        summary = json.loads((study.run_dir(run) / "summary.json").read_text())
        assert summary["status"] == "finished" and summary["tokens"] == run.tokens
    results = collect(study)
    assert not results.excluded and len(results.points) == 6
    assert sorted(p.budget is None for p in results.points) == [False] * 3 + [True] * 3
