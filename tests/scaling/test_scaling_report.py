"""The report: PNG plots, a markdown file with the prediction, both fits, the runs and the
runs left out; benchmark plots only when lm-eval scores exist; W&B logging offline."""
from __future__ import annotations

import json

import numpy as np

from llmexp.scaling import CHINCHILLA, ParametricLaw
from llmexp.scaling.fit import fit_results
from llmexp.scaling.report import write_report
from llmexp.scaling.results import Point, Results, collect
from tests.scaling.conftest import isoflop_points, write_summary

PNG = b"\x89PNG\r\n\x1a\n"
# A law with losses in the range tiny models reach (Chinchilla's is for 1e7+ parameters).
TOY = ParametricLaw("toy", E=1.5, A=30.0, B=40.0, alpha=0.3, beta=0.3)


def _synthetic(budgets, sizes, noise=0.003, excluded=()):
    B, N, D, L = isoflop_points(CHINCHILLA, budgets, sizes=sizes, noise=noise)
    points = [Point(f"r{i}", b, n, d, 6 * n * d, l) for i, (b, n, d, l) in enumerate(zip(B, N, D, L))]
    return Results(points, list(excluded), "synthetic")


def _finish_with_law(study, law):
    """Summaries whose losses follow `law` (what a good study would measure)."""
    for run in study.runs:
        write_summary(study, run, val_loss=float(law.loss(run.params, run.tokens)))


def test_report_from_a_study(small_study):
    _finish_with_law(small_study, TOY)
    eval_dir = small_study.run_dir(small_study.runs[0]) / "eval"
    eval_dir.mkdir()
    (eval_dir / "results.json").write_text(json.dumps({"results": {"arc_easy": {"acc,none": 0.3}}}))
    fit = fit_results(collect(small_study), target=1e15, bootstrap=20)
    path = write_report(fit, small_study.root, small_study)
    text = path.read_text()
    for heading in ("# Scaling study: small", "## Prediction at C = 1e+15 FLOPs", "## Approach 2", "## Approach 3",
                    "## Runs", "## Plots"):
        assert heading in text
    assert "best shape at this budget" in text and "--family tiny" in text
    for name in ("isoflop.png", "optimal.png", "benchmarks.png"):
        png = small_study.root / "plots" / name
        assert png.read_bytes()[:8] == PNG and f"(plots/{name})" in text


def test_report_says_which_plots_it_could_not_draw(small_study):
    _finish_with_law(small_study, TOY)
    fit = fit_results(collect(small_study), bootstrap=0)
    text = write_report(fit, small_study.root, small_study).read_text()
    assert "Not drawn: no run has lm-eval scores" in text
    assert not (small_study.root / "plots" / "benchmarks.png").exists()
    if fit.parametric is None:
        assert "Not drawn: no parametric fit" in text and "Not fitted:" in text


def test_contours_and_frontier_from_a_parametric_fit(tmp_path):
    results = _synthetic(np.logspace(18, 21, 4), 6, excluded=[("r-bad", "non-finite validation loss (nan)")])
    fit = fit_results(results, target=1e23, bootstrap=20, flops="6ND")
    text = write_report(fit, tmp_path).read_text()
    assert (tmp_path / "plots" / "contours.png").read_bytes()[:8] == PNG
    assert "| r-bad | non-finite validation loss (nan) |" in text
    assert "approach 3 (L(N, D))" in text


def test_plots_go_to_wandb_offline(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    fit = fit_results(_synthetic([1e18, 1e19, 1e20], 5, noise=0.0), target=1e21, bootstrap=0, flops="6ND")
    write_report(fit, tmp_path, wandb_project="llmexp-test")
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    assert any(p.suffix == ".png" for p in runs[0].rglob("*"))
