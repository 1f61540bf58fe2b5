"""The study report: plots (PNG, and to W&B when asked) and a markdown file gathering the
plots, the runs used and left out (outliers among them), approaches 1-3 with their intervals,
the held-out-budget check, the loss -> score fits and the prediction, all in one FLOP convention."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import List, Optional

from llmexp.scaling import plots
from llmexp.scaling.fit import StudyFit
from llmexp.scaling.flops import optimal_split
from llmexp.scaling.shapes import candidates, family
from llmexp.scaling.study import Study

REPORT_FILE = "report.md"
PLOT_TITLES = {
    "isoflop.png": "IsoFLOP curves with fitted minima",
    "optimal.png": "N_opt and D_opt against compute",
    "contours.png": "Loss contours over (N, D) with the compute-optimal frontier",
    "envelope.png": "Approach 1: training curves and their envelope",
    "residuals.png": "Approach 3 residuals",
    "extrapolation.png": "Extrapolation to the target, with the held-out budget",
    "benchmarks.png": "Loss -> benchmark score",
}
SKIPPED = {
    "isoflop.png": "no run has an IsoFLOP budget",
    "optimal.png": "neither fit succeeded",
    "contours.png": "no parametric fit (see Approach 3)",
    "envelope.png": "no run has a logged validation curve (metrics.csv val/loss)",
    "residuals.png": "no parametric fit (see Approach 3)",
    "extrapolation.png": "no parametric fit (see Approach 3)",
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
    for key, label in (("envelope", "approach 1 (envelope)"), ("isoflop", "approach 2 (IsoFLOP minima)"),
                       ("parametric", "approach 3 (L(N, D))")):
        if key in pred:
            e = pred[key]
            rows.append([label, _ci(e["params"], e.get("params_interval")), _ci(e["tokens"], e.get("tokens_interval")),
                         _g(e["tokens"] / e["params"]), _ci(e.get("loss"), e.get("loss_interval"))])
    out = [f"## Prediction at C = {fit.target:.3g} FLOPs ({fit.count.label})", "",
           _table(["fit", "N_opt", "D_opt", "tokens/param", "loss"], rows), ""]
    for task, e in pred.get("tasks", {}).items():
        out.append(f"- {task} ({e['metric']}) of the approach-3 optimum, through the loss -> score fit: "
                   f"{_ci(e['score'], e['score_interval'])}")
    if fit.warnings:
        out += ["", f"**The fits carry {len(fit.warnings)} warning(s)** (below): `python -m llmexp.scaling plan --law` "
                "refuses this fit without `--allow-warnings`."]
    out.append("")
    if study and fit.parametric:
        law = fit.parametric.law
        fam = family(study.spec.family)
        N, _ = optimal_split(law, fit.target, fit.count)
        shapes = list(candidates(fam, study.vocab_size, N / 4, N * 4, study.seq_len))
        if shapes:  # the family's shape with the least predicted loss at the target, FLOPs counted exactly
            s = min(shapes, key=lambda c: law.loss(c.n, fit.target / c.flops_per_token))
            m, D = s.model, fit.target / s.flops_per_token
            out += [f"The {fam.name} family's best shape at this budget (approach 3's loss, tokens from its exact "
                    f"FLOPs per token): `{m.name}` ({m.n_layers} layers, d_model {m.d_model}, {m.n_heads} heads, "
                    f"{m.n_kv_heads} KV heads, FFN {m.ffn_dim}), N = {s.n:,}, D = {D:,.0f} tokens, predicted loss "
                    f"{_g(law.loss(s.n, D), 4)}. `python -m llmexp.scaling shape --params {s.n} --family {fam.name} "
                    f"--vocab {study.vocab_size}` writes its model config.", ""]
    return out


def holdout_line(h: dict) -> str:
    """The held-out-budget check in one line."""
    if "reason" in h:
        return f"held-out budget check: not run: {h['reason']}"
    parts = [f"held-out budget check (fit without the largest budget, {h['budget']:.3g}, {h['runs']} runs):"]
    iso, par = h.get("isoflop", {}), h.get("parametric", {})
    if "ratio" in iso:
        parts.append(f"approach 2 predicts its N_opt {iso['predicted_params']:.4g} vs {iso['observed_params']:.4g} "
                     f"observed (x{iso['ratio']:.3f});")
    else:
        parts.append(f"approach 2: {iso.get('reason')};")
    if "mean_abs_loss_error" in par:
        parts.append(f"approach 3 predicts its runs' losses within {par['mean_abs_loss_error']:.2%} on average "
                     f"(worst {par['max_abs_loss_error']:.2%}, bias {par['mean_loss_error']:+.2%})")
    else:
        parts.append(f"approach 3: {par.get('reason')}")
    return " ".join(parts)


def _runs(fit: StudyFit) -> List[str]:
    r = fit.results
    rows = [[p.run, _g(p.budget), f"{p.params:,.0f}", f"{p.tokens:,.0f}", _g(p.tokens / p.params), _g(p.flops), f"{p.loss:.4f}"]
            for p in sorted(r.points, key=lambda p: (p.budget or 0, p.params))]
    out = ["## Runs", "", f"{len(r.points)} runs used, {len(r.excluded)} left out; outlier rule: {fit.outlier_rule}; "
           f"budgets within {fit.tolerance:.0%} of each other are one IsoFLOP curve.", "",
           _table(["run", "budget", "N", "D", "D/N", "FLOPs (exact)", "final val loss"], rows), ""]
    if r.excluded:
        out += ["Left out of the fits:", "", _table(["run", "why"], [[run, why] for run, why in r.excluded]), ""]
    return out


def _isoflop(fit: StudyFit) -> List[str]:
    out = ["## Approach 2: IsoFLOP minima", ""]
    if not fit.isoflop:
        return out + [f"Not fitted: {fit.isoflop_reason}", ""]
    f, d = fit.isoflop, fit.to_dict()["isoflop"]
    iv = d.get("intervals", {})
    rows = [[_g(m.budget), _g(m.compute), m.n_runs, f"{m.params:,.0f}", f"{m.tokens:,.0f}", f"{m.loss:.4f}",
             "yes" if m.interior else "no (extrapolated)"] for m in f.minima]
    out += [_table(["budget", f"C at minimum ({fit.count.convention})", "runs", "N_opt", "D_opt", "loss at minimum",
                    "minimum inside the sizes trained"], rows), "",
            f"N_opt = {_g(f.law.kN)} C^{f.law.a:.4f} (a {_ci(f.law.a, iv.get('a'))}), "
            f"D_opt = {_g(f.law.kD)} C^{f.law.b:.4f} (b {_ci(f.law.b, iv.get('b'))}); C: {fit.count.label}.", ""]
    out += [f"- warning: {w}" for w in f.warnings]
    out += [f"- budget {_g(c)} left out: {why}" for c, why in f.excluded]
    out += [f"- {item['run']} left out of approach 2: {item['why']}" for item in d["excluded_runs"]]
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


def _envelope(fit: StudyFit) -> List[str]:
    out = ["## Approach 1: envelope of the training curves", ""]
    if not fit.envelope:
        return out + [f"Not fitted: {fit.envelope_reason}", ""]
    f = fit.envelope
    return out + [f"{len(f.points)} compute values where an interior size is best, from the validation curves of "
                  f"{f.sizes} sizes: N_opt = {_g(f.law.kN)} C^{f.law.a:.4f}, D_opt = {_g(f.law.kD)} C^{f.law.b:.4f} "
                  f"(C: {fit.count.label}).", ""] + [f"- {w}" for w in f.warnings] + [""]


def _checks(fit: StudyFit) -> List[str]:
    out = ["## Held-out budget", "", holdout_line(fit.holdout), ""]
    if fit.tasks or fit.task_reasons:
        out += ["## Loss -> benchmark score (OLMo ladder's second step)", ""]
        out += [f"- {t}: {f.metric} = {f.low:.3g} + ({f.high:.3g} - {f.low:.3g}) / (1 + exp({f.k:.3g} (L - {f.L0:.4g}))), "
                f"{f.runs} runs, rmse {f.rmse:.3g}" for t, f in fit.tasks.items()]
        out += [f"- not fitted: {why}" for why in fit.task_reasons] + [""]
    return out


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
             f"FLOPs: {fit.count.label}, everywhere in this report. Intervals: {fit.level:.0%}, bootstrap median +- z x "
             f"1.4826 MAD over {fit.bootstrap} resamples (log scale for positive quantities).", ""]
    if study:
        s = study.spec
        lines += [f"Design: budgets {', '.join(_g(c) for c in sorted(set(s.budgets)))} FLOPs; family `{s.family}`; "
                  f"vocabulary {study.vocab_size:,}; sequence {study.seq_len}; lr rule {s.lr}; batch rule {s.batch_tokens} tokens; "
                  f"warmup {s.warmup_fraction:.0%} of steps; overrides `{' '.join(s.overrides) or '-'}`.", ""]
    if fit.target:
        lines += _prediction(fit, study)
    lines += _envelope(fit) + _isoflop(fit) + _parametric(fit) + _checks(fit) + _runs(fit) + _plots(written)
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
