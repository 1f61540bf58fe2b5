"""Which runs a fit uses: finished, finite, not diverged, trained as designed. Every other run
is left out with a reason that the report and the command line show."""
from __future__ import annotations

import json

import pytest

from llmexp.scaling.results import collect, from_csv
from tests.scaling.conftest import write_summary

LM_EVAL = {"results": {"hellaswag": {"alias": "hellaswag", "acc,none": 0.31, "acc_stderr,none": 0.01, "acc_norm,none": 0.35},
                       "arc_easy": {"alias": "arc_easy", "acc,none": 0.45}}}


def test_each_kind_of_bad_run_is_left_out_with_its_reason(small_study):
    s = small_study
    r = s.runs
    steps = write_summary(s, r[0], val_loss=4.2) / "eval"
    for step, acc in ((100, 0.2), (200, 0.25)):  # an eval group run during training
        (steps / f"step-{step:07d}").mkdir(parents=True)
        (steps / f"step-{step:07d}" / "results.json").write_text(json.dumps({"results": {"arc_easy": {"acc,none": acc}}}))
    eval_dir = write_summary(s, r[1], val_loss=4.0) / "eval"
    eval_dir.mkdir()
    (eval_dir / "results.json").write_text(json.dumps(LM_EVAL))
    write_summary(s, r[2], val_loss=float("nan"))
    write_summary(s, r[3], val_loss=8.9, initial_val_loss=7.0)
    write_summary(s, r[4], tokens=r[4].tokens // 2)
    s.run_dir(r[5]).mkdir(parents=True)  # started, never finished
    got = collect(s)
    assert [p.run for p in got.points] == [r[0].id, r[1].id]
    assert got.points[1].scores == {"hellaswag": ("acc_norm,none", 0.35), "arc_easy": ("acc,none", 0.45)}
    assert got.points[0].scores == {"arc_easy": ("acc,none", 0.25)} and got.points[0].budget == r[0].budget
    why = dict(got.excluded)
    assert why[r[2].id] == "non-finite validation loss (nan)"
    assert why[r[3].id].startswith("diverged: validation loss 8.900 >= 7.000 at step 0")
    assert why[r[4].id] == f"stopped early: trained {r[4].tokens // 2:,} of {r[4].tokens:,} tokens"
    assert why[r[5].id] == "did not finish (no summary.json)"


def test_failed_status_unrun_and_worse_than_uniform(small_study):
    s = small_study
    r = s.runs
    write_summary(s, r[0], status="failed")
    write_summary(s, r[1], val_loss=7.5, initial_val_loss=None)  # ln(1024) = 6.93
    (s.run_dir(r[2])).mkdir(parents=True)
    (s.run_dir(r[2]) / "summary.json").write_text("{not json")
    why = dict(collect(s).excluded)
    assert why[r[0].id] == "status 'failed' (not finished)"
    assert why[r[1].id].startswith("diverged: validation loss 7.500 > ln(vocab) = 6.931")
    assert why[r[2].id].startswith("unreadable summary.json")
    assert why[r[3].id] == "not run"


def test_points_from_a_csv(tmp_path):
    path = tmp_path / "points.csv"
    path.write_text("run,budget,params,tokens,loss\na,1e18,1e8,1.6e9,3.1\nb,1e18,2e8,8e8,inf\nc,1e18,x,1,1\n")
    got = from_csv(path)
    assert [p.run for p in got.points] == ["a"] and got.points[0].flops == pytest.approx(6 * 1e8 * 1.6e9)
    assert [r for r, _ in got.excluded] == ["b", "c"]
    (tmp_path / "bad.csv").write_text("n,d,l\n1,2,3\n")
    with pytest.raises(ValueError, match="needs columns params, tokens, loss"):
        from_csv(tmp_path / "bad.csv")
