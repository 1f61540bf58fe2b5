"""The study's plots as PNG files (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402

from llmexp.scaling.fit import StudyFit  # noqa: E402

DPI = 120


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


def isoflop_curves(fit: StudyFit, path: Path) -> Optional[Path]:
    """Loss against N at each budget, the fitted parabolas and their minima."""
    points = [p for p in fit.results.points if p.budget is not None]
    if not points:
        return None
    colors = _budget_colors({p.budget for p in points})
    minima = {m.budget: m for m in fit.isoflop.minima} if fit.isoflop else {}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for C, color in colors.items():
        mine = [p for p in points if p.budget == C]
        N = np.array([p.params for p in mine])
        ax.scatter(N, [p.loss for p in mine], color=color, label=f"{C:.3g} FLOPs", zorder=3)
        if C in minima:
            m = minima[C]
            grid = np.geomspace(min(N.min(), m.params) / 1.2, max(N.max(), m.params) * 1.2, 200)
            ax.plot(grid, m.loss_at(grid), color=color, lw=1.2)
            ax.scatter([m.params], [m.loss], marker="*", s=180, color=color, edgecolor="black", zorder=4)
    ax.set_xscale("log")
    ax.set_xlabel("parameters N")
    ax.set_ylabel("final validation loss")
    ax.set_title("IsoFLOP curves (stars: fitted minima)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def optimal_vs_compute(fit: StudyFit, path: Path) -> Optional[Path]:
    """N_opt and D_opt against C: the IsoFLOP minima, the approach-2 power laws with their
    bootstrap band, the approach-3 frontier, and the target prediction."""
    if not (fit.isoflop or fit.parametric):
        return None
    budgets = [m.budget for m in fit.isoflop.minima] if fit.isoflop else sorted({p.flops for p in fit.results.points})
    hi = max(max(budgets), fit.target or 0)
    C = np.geomspace(min(budgets) / 2, hi * 2, 100)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for k, (ax, label) in enumerate(zip(axes, ("parameters N_opt", "tokens D_opt"))):
        if fit.isoflop:
            f = fit.isoflop
            ax.scatter(budgets, [m.params if k == 0 else m.tokens for m in f.minima], color="C0", zorder=3, label="IsoFLOP minima")
            ax.plot(C, f.law.optimal(C)[k], color="C0", label=f"approach 2: C^{(f.law.a if k == 0 else f.law.b):.3f}")
            if f.boot is not None and len(f.boot):
                lines = np.exp(f.boot[:, 2 * k, None] + f.boot[:, 2 * k + 1, None] * np.log(C))
                tail = 50 * (1 - fit.level)
                ax.fill_between(C, *np.percentile(lines, [tail, 100 - tail], axis=0), color="C0", alpha=0.2,
                                label=f"{fit.level:.0%} bootstrap band")
        if fit.parametric:
            law = fit.parametric.law
            a, b = law.exponents
            ax.plot(C, law.optimal(C)[k], color="C3", ls="--", label=f"approach 3 (C=6ND): C^{(a if k == 0 else b):.3f}")
        if fit.target:
            pred = fit.predict(fit.target)
            for key, color in (("isoflop", "C0"), ("parametric", "C3")):
                if key in pred:
                    value = pred[key]["params" if k == 0 else "tokens"]
                    ci = pred[key].get("params_interval" if k == 0 else "tokens_interval")
                    yerr = None if ci is None else [[value - ci[0]], [ci[1] - value]]
                    ax.errorbar([fit.target], [value], yerr=yerr, fmt="D", color=color, capsize=4, zorder=4)
            ax.axvline(fit.target, color="grey", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("compute C (FLOPs)")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    fig.suptitle("Compute-optimal allocation")
    return _save(fig, path)


def loss_contours(fit: StudyFit, path: Path) -> Optional[Path]:
    """Contours of the fitted L(N, D), the study's budgets as C = 6ND lines, the runs, and the
    compute-optimal frontier."""
    if not fit.parametric:
        return None
    law = fit.parametric.law
    N = np.array([p.params for p in fit.results.points])
    D = np.array([p.tokens for p in fit.results.points])
    n_lo, n_hi, d_lo, d_hi = N.min() / 3, N.max() * 3, D.min() / 3, D.max() * 3
    if fit.target:
        n_t, d_t = law.optimal(fit.target)
        n_hi, d_hi = max(n_hi, n_t * 2), max(d_hi, d_t * 2)
    gN, gD = np.meshgrid(np.geomspace(n_lo, n_hi, 200), np.geomspace(d_lo, d_hi, 200))
    fig, ax = plt.subplots(figsize=(7, 5.5))
    grid_loss = law.loss(gN, gD)
    observed = [p.loss for p in fit.results.points]
    # Colour the range the runs and the frontier live in; the grid's far corner would wash it out.
    top = max(observed) + 0.5 * (max(observed) - min(observed))
    levels = np.linspace(grid_loss.min(), max(top, grid_loss.min() + 1e-3), 21)
    cs = ax.contourf(gN, gD, grid_loss, levels=levels, cmap="magma_r", alpha=0.85, extend="max")
    fig.colorbar(cs, ax=ax, label="predicted loss")
    for C in sorted({p.budget for p in fit.results.points if p.budget}):
        ax.plot(gN[0], C / (6 * gN[0]), color="white", lw=0.8, ls=":")
    frontier_C = 6 * np.geomspace(n_lo * d_lo, n_hi * d_hi, 100)
    fN, fD = law.optimal(frontier_C)
    ax.plot(fN, fD, color="cyan", lw=2, label="compute-optimal frontier")
    ax.scatter(N, D, c=observed, cmap="magma_r", vmin=levels[0], vmax=levels[-1], edgecolor="black", zorder=3,
               label="runs")
    if fit.target:
        ax.scatter([n_t], [d_t], marker="*", s=250, color="cyan", edgecolor="black", zorder=4,
                   label=f"optimum at {fit.target:.3g} FLOPs")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(n_lo, n_hi)
    ax.set_ylim(d_lo, d_hi)
    ax.set_xlabel("parameters N")
    ax.set_ylabel("tokens D")
    ax.set_title("L(N, D) fit (approach 3); dotted: the study's budgets as 6ND")
    ax.legend(fontsize=8, loc="lower left")
    return _save(fig, path)


def benchmark_scores(fit: StudyFit, path: Path) -> Optional[Path]:
    """lm-eval scores against the compute each run used."""
    scored = [p for p in fit.results.points if p.scores]
    if not scored:
        return None
    tasks = sorted({t for p in scored for t in p.scores})
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, task in enumerate(tasks):
        mine = sorted((p.flops, p.scores[task][1]) for p in scored if task in p.scores)
        metric = next(p.scores[task][0] for p in scored if task in p.scores)
        ax.scatter(*zip(*mine), color=f"C{i % 10}", label=f"{task} ({metric})")
    ax.set_xscale("log")
    ax.set_xlabel("training compute (FLOPs)")
    ax.set_ylabel("score")
    ax.set_title("Benchmark score against compute")
    ax.legend(fontsize=8)
    return _save(fig, path)


PLOTS = {
    "isoflop.png": isoflop_curves,
    "optimal.png": optimal_vs_compute,
    "contours.png": loss_contours,
    "benchmarks.png": benchmark_scores,
}
