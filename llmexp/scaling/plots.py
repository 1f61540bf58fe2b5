"""The study's plots as PNG files (matplotlib, Agg backend: no display needed). Every compute
axis names the report's FLOP convention."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402

from llmexp.scaling.fit import StudyFit, run_compute, run_per_token  # noqa: E402
from llmexp.scaling.flops import optimal_split  # noqa: E402
from llmexp.scaling.intervals import band  # noqa: E402
from llmexp.scaling.isoflop_fit import bin_budget, bins  # noqa: E402
from llmexp.scaling.laws import law_from_dict  # noqa: E402
from llmexp.scaling.parametric_fit import to_law  # noqa: E402

DPI = 120
BAND_LAWS = 200  # bootstrap laws drawn for a band (the band's scale is stable well below this)


def _compute_label(fit: StudyFit) -> str:
    return f"compute C ({fit.count.label})"


def _budget_colors(budgets):
    cmap = plt.get_cmap("viridis")
    budgets = sorted(budgets)
    return {c: cmap(i / max(1, len(budgets) - 1)) for i, c in enumerate(budgets)}


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _save_loss_vs_compute(fig, ax, fit: StudyFit, title: str, path: Path) -> Path:
    ax.set_xscale("log")
    ax.set_xlabel(_compute_label(fit), fontsize=9)
    ax.set_ylabel("validation loss")
    ax.set_title(title)
    ax.legend(fontsize=7)
    return _save(fig, path)


def isoflop_curves(fit: StudyFit, path: Path) -> Optional[Path]:
    """Loss against N on each IsoFLOP curve (binned budgets), the fitted parabolas and minima."""
    budget, N, _, L = fit.results.arrays()
    which = bins(budget, fit.tolerance)
    if which.max() < 0:
        return None
    curves = {bin_budget(budget[which == b]): which == b for b in range(which.max() + 1)}
    minima = {m.budget: m for m in fit.isoflop.minima} if fit.isoflop else {}
    colors = _budget_colors(curves)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for C, mine in curves.items():
        ax.scatter(N[mine], L[mine], color=colors[C], label=f"budget {C:.3g}", zorder=3)
        if C in minima:
            m = minima[C]
            grid = np.geomspace(min(N[mine].min(), m.params) / 1.2, max(N[mine].max(), m.params) * 1.2, 200)
            ax.plot(grid, m.loss_at(grid), color=colors[C], lw=1.2)
            ax.scatter([m.params], [m.loss], marker="*", s=180, color=colors[C], edgecolor="black", zorder=4)
    ax.set_xscale("log")
    ax.set_xlabel("parameters N")
    ax.set_ylabel("final validation loss")
    ax.set_title(f"IsoFLOP curves (stars: fitted minima); budgets in {fit.count.label}", fontsize=9)
    ax.legend(fontsize=8)
    return _save(fig, path)


def optimal_vs_compute(fit: StudyFit, path: Path) -> Optional[Path]:
    """N_opt and D_opt against C: approach 1's envelope minima and 2's IsoFLOP minima with their
    power laws (2 with its bootstrap band), approach 3's frontier, and the target prediction."""
    if not (fit.isoflop or fit.parametric):
        return None
    computes = run_compute(fit.results, fit.count)
    hi = max(computes.max(), fit.target or 0)
    C = np.geomspace(computes.min() / 2, hi * 2, 60)
    pred = fit.predict(fit.target) if fit.target else {}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for k, (ax, label) in enumerate(zip(axes, ("parameters N_opt", "tokens D_opt"))):
        key = "params" if k == 0 else "tokens"
        if fit.envelope:
            f = fit.envelope
            ax.scatter([p.compute for p in f.points], [getattr(p, key) for p in f.points], color="C2", s=12,
                       label="envelope minima")
            ax.plot(C, f.law.optimal(C)[k], color="C2", ls="-.", label=f"approach 1: C^{(f.law.a, f.law.b)[k]:.3f}")
        if fit.isoflop:
            f = fit.isoflop
            ax.scatter([m.compute for m in f.minima], [getattr(m, key) for m in f.minima], color="C0", zorder=3,
                       label="IsoFLOP minima")
            ax.plot(C, f.law.optimal(C)[k], color="C0", label=f"approach 2: C^{(f.law.a, f.law.b)[k]:.3f}")
            if f.boot is not None and len(f.boot):
                with np.errstate(over="ignore"):
                    lines = np.exp(f.boot[:, 2 * k, None] + f.boot[:, 2 * k + 1, None] * np.log(C))
                ax.fill_between(C, *band(lines, fit.level, log=True), color="C0", alpha=0.2,
                                label=f"{fit.level:.0%} bootstrap band")
        if fit.parametric:
            law = fit.parametric.law
            ax.plot(C, optimal_split(law, C, fit.count)[k], color="C3", ls="--", label="approach 3 frontier")
        for name, color in (("envelope", "C2"), ("isoflop", "C0"), ("parametric", "C3")):
            if name in pred:
                value, ci = pred[name][key], pred[name].get(f"{key}_interval")
                yerr = None if ci is None else [[value - ci[0]], [ci[1] - value]]
                ax.errorbar([fit.target], [value], yerr=yerr, fmt="D", color=color, capsize=4, zorder=4)
        if fit.target:
            ax.axvline(fit.target, color="grey", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(_compute_label(fit), fontsize=9)
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    fig.suptitle("Compute-optimal allocation")
    return _save(fig, path)


def loss_contours(fit: StudyFit, path: Path) -> Optional[Path]:
    """Contours of the fitted L(N, D), each budget's runs on its curve D = C / FLOPs-per-token(N),
    the runs, and the compute-optimal frontier in the report's convention."""
    if not fit.parametric:
        return None
    law = fit.parametric.law
    budget, N, D, L = fit.results.arrays()
    n_lo, n_hi, d_lo, d_hi = N.min() / 3, N.max() * 3, D.min() / 3, D.max() * 3
    if fit.target:
        n_t, d_t = optimal_split(law, fit.target, fit.count)
        n_hi, d_hi = max(n_hi, n_t * 2), max(d_hi, d_t * 2)
    gN, gD = np.meshgrid(np.geomspace(n_lo, n_hi, 200), np.geomspace(d_lo, d_hi, 200))
    fig, ax = plt.subplots(figsize=(7, 5.5))
    grid_loss = law.loss(gN, gD)
    # Colour the range the runs and the frontier live in; the grid's far corner would wash it out.
    top = L.max() + 0.5 * np.ptp(L)
    levels = np.linspace(grid_loss.min(), max(top, grid_loss.min() + 1e-3), 21)
    cs = ax.contourf(gN, gD, grid_loss, levels=levels, cmap="magma_r", alpha=0.85, extend="max")
    fig.colorbar(cs, ax=ax, label="predicted loss")
    # The runs' own FLOPs per token (exact): each budget's runs lie on its curve.
    for C in sorted({float(c) for c in budget[np.isfinite(budget)]}):
        inside = (gN[0] >= N.min()) & (gN[0] <= N.max())
        ax.plot(gN[0][inside], fit.count.as_trained(gN[0][inside], C), color="white", lw=0.8, ls=":")
    frontier_C = np.geomspace(fit.count.compute(n_lo, d_lo), fit.count.compute(n_hi, d_hi), 60)
    fN, fD = optimal_split(law, frontier_C, fit.count)
    ax.plot(fN, fD, color="cyan", lw=2, label=f"compute-optimal frontier ({fit.count.label})")
    ax.scatter(N, D, c=L, cmap="magma_r", vmin=levels[0], vmax=levels[-1], edgecolor="black", zorder=3, label="runs")
    if fit.target:
        ax.scatter([n_t], [d_t], marker="*", s=250, color="cyan", edgecolor="black", zorder=4,
                   label=f"optimum at {fit.target:.3g} FLOPs")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(n_lo, n_hi)
    ax.set_ylim(d_lo, d_hi)
    ax.set_xlabel("parameters N")
    ax.set_ylabel("tokens D")
    ax.set_title("L(N, D) fit (approach 3); dotted: each budget's curve as trained", fontsize=9)
    ax.legend(fontsize=7, loc="lower left")
    return _save(fig, path)


def residuals(fit: StudyFit, path: Path) -> Optional[Path]:
    """Approach 3's log-loss residuals against N and against compute, coloured by tokens per
    parameter: structure here is what the law's form misses."""
    if not fit.parametric:
        return None
    _, N, D, _ = fit.results.arrays()
    r = fit.residuals()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, x, label in ((axes[0], N, "parameters N"), (axes[1], run_compute(fit.results, fit.count), _compute_label(fit))):
        sc = ax.scatter(x, 100 * r, c=np.log10(D / N), cmap="coolwarm", edgecolor="black", zorder=3)
        ax.axhline(0, color="grey", lw=1)
        ax.set_xscale("log")
        ax.set_xlabel(label, fontsize=9)
        ax.set_ylabel("residual: log observed - log fitted loss (%)")
    fig.colorbar(sc, ax=axes, label="log10 tokens per parameter")
    fig.suptitle(f"Approach 3 residuals (rms {100 * np.sqrt(np.mean(r ** 2)):.2f}%)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def extrapolation(fit: StudyFit, path: Path) -> Optional[Path]:
    """Loss along the compute-optimal frontier out to the target: the fit with its bootstrap
    band, the fit without the largest budget (the held-out check) and the runs."""
    if not fit.parametric:
        return None
    computes = run_compute(fit.results, fit.count)
    C = np.geomspace(computes.min() / 2, max(computes.max() * 2, (fit.target or 0) * 2), 40)
    law = fit.parametric.law
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(C, law.loss(*optimal_split(law, C, fit.count)), color="C3", label="approach 3, all runs")
    boot = fit.parametric.boot
    if boot is not None and len(boot):
        laws = [to_law(t) for t in boot[:BAND_LAWS]]
        curves = np.array([lb.loss(*optimal_split(lb, C, fit.count)) for lb in laws])
        ax.fill_between(C, *band(curves, fit.level, log=True), color="C3", alpha=0.2, label=f"{fit.level:.0%} bootstrap band")
    held = fit.holdout.get("parametric", {})
    names = set(held.get("held_out_runs", []))
    if "law" in held:
        lh = law_from_dict(held["law"])
        ax.plot(C, lh.loss(*optimal_split(lh, C, fit.count)), color="C1", ls="--",
                label=f"without budget {fit.holdout['budget']:.3g} (held out)")
    L = fit.results.arrays()[3]
    mine = np.array([p.run in names for p in fit.results.points])
    ax.scatter(computes[~mine], L[~mine], color="black", s=14, label="runs", zorder=3)
    if mine.any():
        ax.scatter(computes[mine], L[mine], color="C1", marker="s", edgecolor="black", s=24, zorder=3,
                   label="held-out runs")
    if fit.target:
        ax.axvline(fit.target, color="grey", ls=":", lw=1)
    return _save_loss_vs_compute(fig, ax, fit, "Extrapolation: compute-optimal loss against compute", path)


def envelope_curves(fit: StudyFit, path: Path) -> Optional[Path]:
    """Approach 1: every run's validation curve against compute, and the envelope's minima."""
    curves = [p for p in fit.results.points if p.curve is not None]
    if not curves:
        return None
    sizes = sorted({p.params for p in curves})
    cmap = plt.get_cmap("plasma")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for p in curves:
        tokens, loss = p.curve
        color = cmap(sizes.index(p.params) / max(1, len(sizes) - 1))
        label = f"N = {p.params:,.0f}" if p is next(q for q in curves if q.params == p.params) else None
        ax.plot(run_per_token(p, fit.count) * tokens, loss, color=color, lw=1, alpha=0.8, label=label)
    if fit.envelope:
        ax.scatter([q.compute for q in fit.envelope.points], [q.loss for q in fit.envelope.points], color="black",
                   s=10, zorder=3, label="envelope minima")
    return _save_loss_vs_compute(fig, ax, fit, "Approach 1: training curves and their envelope", path)


def benchmark_scores(fit: StudyFit, path: Path) -> Optional[Path]:
    """lm-eval scores against validation loss, with the fitted loss -> score sigmoids."""
    scored = [p for p in fit.results.points if p.scores]
    if not scored:
        return None
    tasks = sorted({t for p in scored for t in p.scores})
    L = np.array([p.loss for p in scored])
    grid = np.linspace(L.min() - 0.2 * np.ptp(L) - 0.05, L.max() + 0.2 * np.ptp(L) + 0.05, 200)
    prediction = fit.predict(fit.target) if fit.target else {}
    pred = prediction.get("tasks", {})
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, task in enumerate(tasks):
        mine = [(p.loss, p.scores[task][1]) for p in scored if task in p.scores]
        metric = next(p.scores[task][0] for p in scored if task in p.scores)
        ax.scatter(*zip(*mine), color=f"C{i % 10}", label=f"{task} ({metric})")
        if task in fit.tasks:
            ax.plot(grid, fit.tasks[task].score(grid), color=f"C{i % 10}", lw=1)
        if task in pred:
            ax.scatter([prediction["parametric"]["loss"]], [pred[task]["score"]], marker="D",
                       color=f"C{i % 10}", edgecolor="black", zorder=4)
    ax.set_xlabel("validation loss")
    ax.set_ylabel("score")
    ax.set_title("Loss -> benchmark score (diamonds: predicted at the target)")
    ax.legend(fontsize=8)
    return _save(fig, path)


PLOTS = {
    "isoflop.png": isoflop_curves,
    "optimal.png": optimal_vs_compute,
    "contours.png": loss_contours,
    "envelope.png": envelope_curves,
    "residuals.png": residuals,
    "extrapolation.png": extrapolation,
    "benchmarks.png": benchmark_scores,
}
