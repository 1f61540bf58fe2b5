"""The study report: plots (PNG, and to W&B when asked) and a markdown file gathering the
plots, the runs used and left out, both fits with their intervals, and the prediction."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import List, Optional

from llmexp.scaling import plots
from llmexp.scaling.fit import StudyFit
from llmexp.scaling.planner import plan
from llmexp.scaling.shapes import family
from llmexp.scaling.study import Study

REPORT_FILE = "report.md"
PLOT_TITLES = {
    "isoflop.png": "IsoFLOP curves with fitted minima",
    "optimal.png": "N_opt and D_opt against compute",
    "contours.png": "Loss contours over (N, D) with the compute-optimal frontier",
    "benchmarks.png": "Benchmark score against compute",
}
SKIPPED = {
    "isoflop.png": "no run has an IsoFLOP budget",
    "optimal.png": "neither fit succeeded",
    "contours.png": "no parametric fit (see Approach 3)",
    "benchmarks.png": "no run has lm-eval scores (<run>/eval/); set an eval group (eval=smoke eval.every_n_steps=N) to get them",
}


def _g(x, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}g}"


def _ci(value, ci) -> str:
    return _g(value) + ("" if not ci else f" [{_g(ci[0])}, {_g(ci[1])}]")


def _table(headers: List[str], rows: List[List[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(map(str, r)) + " |" for r in rows])


def _prediction(fit: StudyFit, study: Optional[Study]) -> List[str]:
    pred = fit.predict(fit.target)
    rows = []
    for key, label in (("isoflop", "approach 2 (IsoFLOP minima)"), ("parametric", "approach 3 (L(N, D), C = 6ND)")):
        if key in pred:
            e = pred[key]
            rows.append([label, _ci(e["params"], e.get("params_interval")), _ci(e["tokens"], e.get("tokens_interval")),
                         _g(e["tokens"] / e["params"]), _ci(e.get("loss"), e.get("loss_interval")), e["flops"]])
    out = [f"## Prediction at C = {fit.target:.3g} FLOPs", "",
           _table(["fit", "N_opt", "D_opt", "tokens/param", "loss", "FLOPs counted as"], rows), ""]
    if fit.parametric and fit.parametric.warnings:
        out += ["Approach 3 carries warnings (see its section): read its row with care.", ""]
    if study and fit.parametric:
        s = plan(fit.parametric.law, compute=fit.target, family=family(study.spec.family),
                 vocab_size=study.vocab_size, seq_len=study.seq_len).shape
        m = s.shape.model
        out += [f"The {study.spec.family} family's compute-optimal shape at this budget, FLOPs counted exactly "
                f"(approach 3's loss): `{m.name}` ({m.n_layers} layers, d_model {m.d_model}, {m.n_heads} heads, "
                f"{m.n_kv_heads} KV heads, FFN {m.ffn_dim}), N = {s.shape.n:,}, D = {s.tokens:,.0f} tokens, "
                f"predicted loss {_g(s.loss, 4)}. `python -m llmexp.scaling shape --params {s.shape.n} "
                f"--family {study.spec.family} --vocab {study.vocab_size}` writes its model config.", ""]
    return out


def _runs(fit: StudyFit) -> List[str]:
    r = fit.results
    rows = [[p.run, _g(p.budget), f"{p.params:,.0f}", f"{p.tokens:,.0f}", _g(p.tokens / p.params), _g(p.flops), f"{p.loss:.4f}"]
            for p in sorted(r.points, key=lambda p: (p.budget or 0, p.params))]
    out = ["## Runs", "", f"{len(r.points)} runs used, {len(r.excluded)} left out.", "",
           _table(["run", "budget", "N", "D", "D/N", "FLOPs", "final val loss"], rows), ""]
    if r.excluded:
        out += ["Left out of the fits:", "", _table(["run", "why"], [[run, why] for run, why in r.excluded]), ""]
    return out


def _isoflop(fit: StudyFit) -> List[str]:
    out = ["## Approach 2: IsoFLOP minima", ""]
    if not fit.isoflop:
        return out + [f"Not fitted: {fit.isoflop_reason}", ""]
    f, d = fit.isoflop, fit.to_dict()["isoflop"]
    iv = d.get("intervals", {})
    rows = [[_g(m.budget), m.n_runs, f"{m.params:,.0f}", f"{m.tokens:,.0f}", f"{m.loss:.4f}", "yes" if m.interior else "no (extrapolated)"]
            for m in f.minima]
    counted = {"exact": "exactly, attention included (llmexp.plan.flops_per_token)", "6ND": "as 6ND"}.get(f.law.flops, "as given")
    out += [_table(["budget", "runs", "N_opt", "D_opt", "loss at minimum", "minimum inside the sizes trained"], rows), "",
            f"N_opt = {_g(f.law.kN)} C^{f.law.a:.4f} (a {_ci(f.law.a, iv.get('a'))}), "
            f"D_opt = {_g(f.law.kD)} C^{f.law.b:.4f} (b {_ci(f.law.b, iv.get('b'))}); C counts FLOPs {counted}.", ""]
    out += [f"- {w}" for w in f.warnings]
    out += [f"- budget {_g(c)} left out: {why}" for c, why in f.excluded]
    if f.boot_failed:
        out.append(f"- {f.boot_failed} of {fit.bootstrap} bootstrap resamples had a budget without a minimum and were dropped")
    return out + [""]


def _parametric(fit: StudyFit) -> List[str]:
    out = ["## Approach 3: parametric L(N, D) = E + A/N^alpha + B/D^beta", ""]
    if not fit.parametric:
        return out + [f"Not fitted: {fit.parametric_reason}", ""]
    law, d = fit.parametric.law, fit.to_dict()["parametric"]
    iv = d.get("intervals", {})
    rows = [[name, _ci(getattr(law, name), iv.get(name))] for name in ("E", "A", "B", "alpha", "beta")]
    a, b = law.exponents
    rows += [["a = beta/(alpha+beta)", _ci(a, iv.get("a"))], ["b = alpha/(alpha+beta)", _ci(b, iv.get("b"))]]
    out += [_table(["parameter", f"value [{fit.level:.0%} interval]"], rows), ""]
    out += [f"- warning: {w}" for w in fit.parametric.warnings]
    return out + ["",
                  f"Huber loss (delta 1e-3) on log loss, L-BFGS from the best starts of Hoffmann et al.'s grid of "
                  f"initialisations; {fit.parametric.n_points} runs. Chinchilla reported E=1.69, A=406.4, B=410.7, "
                  "alpha=0.34, beta=0.28 (Epoch AI's replication: 1.82, 482, 2085, 0.35, 0.37) for far larger models "
                  "and another corpus: compare exponents, not constants.", ""]


def _plots(written: dict) -> List[str]:
    out = ["## Plots", ""]
    for name, title in PLOT_TITLES.items():
        out += [f"### {title}", "", f"![{title}](plots/{name})" if written.get(name) else f"Not drawn: {SKIPPED[name]}.", ""]
    return out


def write_report(fit: StudyFit, folder: Path, study: Optional[Study] = None, wandb_project: Optional[str] = None) -> Path:
    folder = Path(folder)
    written = {name: draw(fit, folder / "plots" / name) for name, draw in plots.PLOTS.items()}
    title = study.spec.name if study else fit.results.source
    lines = [f"# Scaling study: {title}", "",
             f"Source: `{fit.results.source}`; written {time.strftime('%Y-%m-%d %H:%M')} by `python -m llmexp.scaling report`. "
             f"Intervals: {fit.level:.0%} percentile bootstrap over {fit.bootstrap} resamples.", ""]
    if study:
        s = study.spec
        lines += [f"Design: budgets {', '.join(_g(c) for c in sorted(set(s.budgets)))} FLOPs; family `{s.family}`; "
                  f"vocabulary {study.vocab_size:,}; sequence {study.seq_len}; lr rule {s.lr}; batch rule {s.batch_tokens} tokens; "
                  f"warmup {s.warmup_fraction:.0%} of steps; overrides `{' '.join(s.overrides) or '-'}`.", ""]
    if fit.target:
        lines += _prediction(fit, study)
    lines += _isoflop(fit) + _parametric(fit) + _runs(fit) + _plots(written)
    path = folder / REPORT_FILE
    path.write_text("\n".join(lines))
    if wandb_project:
        log_to_wandb(fit, {n: p for n, p in written.items() if p}, wandb_project, title, folder)
    return path


def log_to_wandb(fit: StudyFit, images: dict, project: str, name: str, folder: Path) -> None:
    """Log the plots and the prediction to the active W&B run, or to a new one (offline when
    no API key is set)."""
    import wandb

    if not os.environ.get("WANDB_API_KEY"):
        os.environ.setdefault("WANDB_MODE", "offline")
    run = wandb.run
    own = run is None
    if own:
        run = wandb.init(project=project, name=f"scaling-{name}", job_type="scaling-report", dir=str(folder))
    run.log({f"scaling/{Path(n).stem}": wandb.Image(str(p)) for n, p in images.items()})
    if fit.target:
        pred = fit.predict(fit.target)
        run.summary.update({f"scaling/{k}/{field}": v for k in ("isoflop", "parametric") if k in pred
                            for field, v in pred[k].items() if isinstance(v, float)})
    if own:
        run.finish()
