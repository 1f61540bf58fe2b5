"""`python -m llmexp.scaling`: plan, shape, isoflop, run, fit, report.

Bad input exits with code 2 and one line on stderr; a study run with failed runs exits 1.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from llmexp.config.errors import OneLineParser, positive_count, positive_number
from llmexp.scaling.errors import ScalingError
from llmexp.scaling.flops import CONVENTIONS
from llmexp.scaling.isoflop_fit import TOLERANCE
from llmexp.scaling.laws import DEFAULT_LAW
from llmexp.scaling.outliers import RULES
from llmexp.scaling.shapes import FAMILIES

EXAMPLES = """examples:
  python -m llmexp.scaling plan --compute 5.76e23
  python -m llmexp.scaling plan --gpu-hours 100000 --accelerator h100 --mfu 0.4 --law epoch
  python -m llmexp.scaling plan --params 7e9 --law tpp
  python -m llmexp.scaling shape --params 1e9 --family llama --out my_conf --name my1b
  python -m llmexp.scaling isoflop --budgets 1e13,2e13,4e13 --sizes-per-budget 4 --out studies/cpu trainer.accelerator=cpu
  python -m llmexp.scaling run studies/cpu
  python -m llmexp.scaling fit studies/cpu --target 1e15 --flops 6ND --outliers residual
  python -m llmexp.scaling report studies/cpu --target 1e15
"""


def _fail(message: str, code: int = 2) -> None:
    print(f"llmexp.scaling: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def _fraction(text: str) -> float:
    value = positive_number(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1]: {text!r}")
    return value


def _numbers(text: str) -> List[float]:
    return [positive_number(t) for t in text.split(",") if t.strip()]


def _vocab(args, fam) -> int:
    if args.vocab:
        return args.vocab
    import llmexp

    return llmexp.compose([f"tokenizer={fam.tokenizer}"]).tokenizer.vocab_size


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m llmexp.scaling", description="Compute-optimal plans and scaling-law studies.",
                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    def shape_args(q, default_family):
        q.add_argument("--family", default=default_family, help=f"shape family: {', '.join(FAMILIES)} (default %(default)s)")
        q.add_argument("--vocab", type=positive_count, help="vocabulary size (default: the family's tokenizer's)")
        q.add_argument("--seq-len", type=positive_count, help="sequence length for exact FLOPs (default: the family's)")

    q = sub.add_parser("plan", help="compute-optimal N, D, loss, FLOPs and time for a budget, size or token count")
    given = q.add_mutually_exclusive_group(required=True)
    given.add_argument("--compute", type=positive_number, help="budget in FLOPs")
    given.add_argument("--gpu-hours", type=positive_number, help="budget in accelerator-hours (with --accelerator, --mfu)")
    given.add_argument("--params", type=positive_number, help="model size N")
    given.add_argument("--tokens", type=positive_number, help="token budget D")
    q.add_argument("--law", default=DEFAULT_LAW,
                   help="epoch, chinchilla, tpp, or a study folder / fit.json (default %(default)s: Epoch AI's replication)")
    q.add_argument("--allow-warnings", action="store_true", help="plan with a study fit even though it carries warnings")
    q.add_argument("--tokens-per-param", type=positive_number, default=20.0, help="ratio of --law tpp (default %(default)s)")
    q.add_argument("--accelerator", default="h100", help="for hours and time (llmexp/accelerators.py)")
    q.add_argument("--mfu", type=_fraction, default=0.4, help="model-FLOPs utilisation (default %(default)s)")
    q.add_argument("--gpus", type=positive_count, default=1, help="accelerators, for the wall-clock time (default %(default)s)")
    shape_args(q, "llama")
    q.add_argument("--json", action="store_true", help="one JSON object on stdout")

    q = sub.add_parser("shape", help="a model config of the family with about N parameters")
    q.add_argument("--params", type=positive_number, required=True, help="target parameter count")
    shape_args(q, "tiny")
    q.add_argument("--name", help="model name and file stem (default: <family>-d<width>-l<layers>)")
    q.add_argument("--out", type=Path, help="config folder: writes OUT/model/<name>.yaml and checks it composes")

    q = sub.add_parser("isoflop", help="design an IsoFLOP study and emit it (W&B sweep, Hydra multirun, commands)")
    q.add_argument("--budgets", type=_numbers, required=True, help="comma-separated budgets in FLOPs (exact count)")
    q.add_argument("--out", type=Path, required=True, help="the study folder to create")
    q.add_argument("--name", help="study name (default: the folder's name)")
    q.add_argument("--family", default="tiny", help=f"shape family: {', '.join(FAMILIES)} (default %(default)s)")
    q.add_argument("--sizes", type=_numbers, help="comma-separated parameter targets, the same at every budget")
    q.add_argument("--sizes-per-budget", type=positive_count, default=4, help="else: sizes per budget (default %(default)s) ...")
    q.add_argument("--span", type=positive_number, default=8.0, help="... spanning this factor (default %(default)s) ...")
    q.add_argument("--center", default="tpp", help="... around this law's N_opt (default %(default)s)")
    q.add_argument("--lr", default="3e-3", help="learning rate rule: a number, deepseek, or COEF*C^EXP (default %(default)s)")
    q.add_argument("--batch-tokens", default="4096", help="batch rule in tokens: a number, deepseek, or COEF*C^EXP (default %(default)s)")
    q.add_argument("--warmup-fraction", type=float, default=0.1, help="warmup steps as a fraction of steps (default %(default)s)")
    q.add_argument("--cooldowns", type=_numbers, help="with optimizer=adamw_wsd: also cool down each run at these "
                   "fractions of its steps (e.g. 0.25,0.5), several (N, D) points per run")
    q.add_argument("overrides", nargs="*", help="study-wide llmexp overrides, e.g. trainer.accelerator=cpu")

    q = sub.add_parser("run", help="run a study's pending runs here, one process each")
    q.add_argument("study", type=Path)
    q.add_argument("--jobs", type=positive_count, default=1, help="runs at a time, the CPU threads split between them (default %(default)s)")

    for name, text in (("fit", "fit approach 2 and 3 to a study's finished runs"),
                       ("report", "fit, plot and write <study>/report.md")):
        q = sub.add_parser(name, help=text)
        q.add_argument("study", type=Path, nargs="?", help="the study folder")
        q.add_argument("--points", type=Path, help="instead of a study: a CSV with params,tokens,loss[,budget,flops,run]")
        q.add_argument("--target", type=positive_number, help="predict N_opt, D_opt and loss at this budget (FLOPs)")
        q.add_argument("--bootstrap", type=int, default=100, help="bootstrap resamples (default %(default)s)")
        q.add_argument("--level", type=_fraction, default=0.95, help="interval level (default %(default)s)")
        q.add_argument("--starts", type=int, default=20, help="L-BFGS starts from the initialisation grid (0: all)")
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--flops", choices=CONVENTIONS, default="exact",
                       help="how every budget, optimum and axis counts FLOPs (default %(default)s: attention included)")
        q.add_argument("--outliers", choices=RULES, default="none",
                       help="leave out outlier runs by Epoch's rule (highest losses), by residual, or both (default %(default)s)")
        q.add_argument("--budget-tolerance", type=float, default=TOLERANCE,
                       help="budgets within this relative distance are one IsoFLOP curve (default %(default)s)")
        if name == "report":
            q.add_argument("--wandb", metavar="PROJECT", help="also log the plots to W&B (offline without an API key)")
        else:
            q.add_argument("--json", action="store_true", help="print fit.json's content")
    return p


def cmd_plan(args) -> None:
    from llmexp.plan import _duration  # the plan's own way of writing a duration
    from llmexp.scaling.laws import resolve_law_checked
    from llmexp.scaling.planner import compute_from_hours, hours_for, plan, usable_law
    from llmexp.scaling.shapes import family

    resolved = resolve_law_checked(args.law, args.tokens_per_param)
    law = usable_law(resolved, args.law, args.allow_warnings)
    for w in resolved.warnings:  # only with --allow-warnings: loudly, where scripts and people both see it
        print(f"WARNING: planning with a fit that carries a warning: {w}", file=sys.stderr)
    fam = family(args.family)
    vocab, seq = _vocab(args, fam), args.seq_len or fam.max_seq_len
    compute = compute_from_hours(args.gpu_hours, args.accelerator, args.mfu) if args.gpu_hours else args.compute
    alloc = plan(law, compute=compute, params=args.params, tokens=args.tokens, family=fam, vocab_size=vocab, seq_len=seq)
    s, m = alloc.shape, alloc.shape.shape.model
    hours = hours_for(s.flops, args.accelerator, args.mfu)
    if args.json:
        print(json.dumps({**alloc.to_dict(), "warnings": resolved.warnings,
                          "accelerator": args.accelerator, "mfu": args.mfu, "gpus": args.gpus,
                          "accelerator_hours": hours, "wall_hours": hours / args.gpus}, indent=2))
        return
    if args.gpu_hours:
        given = f"{args.gpu_hours:,.0f} {args.accelerator}-hours at {args.mfu:.0%} MFU = {compute:.4g} FLOPs"
    elif args.compute:
        given = f"{compute:.4g} FLOPs"
    else:
        given = f"N = {args.params:.4g}" if args.params else f"D = {args.tokens:.4g}"
    lines = [f"law: {law.name} ({law.source}); FLOPs as {law.flops}"]
    lines += [f"caveat: {law.caveat}"] if law.caveat else []
    lines += [f"WARNING: {w}" for w in resolved.warnings]
    lines += [
        f"compute-optimal for {given}",
        f"  parameters N    {alloc.params:.4g}",
        f"  tokens D        {alloc.tokens:.4g}  ({alloc.tokens_per_param:.1f} tokens/param)",
        f"  FLOPs           {alloc.compute:.4g} ({law.flops})"
        + ("" if law.flops == "6ND" else f"; 6ND = {6 * alloc.params * alloc.tokens:.4g}"),
    ]
    if alloc.loss is not None:
        lines.append(f"  predicted loss  {alloc.loss:.4f}")
    lines += [
        f"shape ({fam.name} family, vocabulary {vocab:,}, sequence {seq}): {m.name}",
        f"  layers {m.n_layers}, d_model {m.d_model}, heads {m.n_heads}, kv heads {m.n_kv_heads}, ffn {m.ffn_dim}",
        f"  parameters N    {s.shape.n:,}",
        f"  FLOPs/token     {s.shape.flops_per_token:,} exact, attention included (6N = {6 * s.shape.n:,})",
        f"  tokens D        {s.tokens:.4g}  ({s.tokens / s.shape.n:.1f} tokens/param)",
        f"  FLOPs           {s.flops:.4g} exact; 6ND = {s.flops_6nd:.4g}",
    ]
    if s.loss is not None:
        lines.append(f"  predicted loss  {s.loss:.4f}")
    lines.append(f"  time            {_duration(hours * 3600 / args.gpus)} on {args.gpus} x {args.accelerator} at "
                 f"{args.mfu:.0%} MFU ({hours:,.4g} {args.accelerator}-hours)")
    print("\n".join(lines))


def cmd_shape(args) -> None:
    from llmexp.scaling.shapes import family, model_yaml, shape_for_params, write_model_yaml

    fam = family(args.family)
    vocab = _vocab(args, fam)
    s = shape_for_params(args.params, fam, vocab, args.seq_len)
    if args.name:
        s.model.name = args.name
    comment = (f"{fam.name} family shape for N ~ {args.params:.4g}: exactly {s.n:,} parameters with a {vocab:,}-token "
               f"vocabulary; {s.flops_per_token:,} training FLOPs/token at sequence {args.seq_len or fam.max_seq_len}")
    print(model_yaml(s.model, comment), end="")
    if args.out:
        import llmexp

        path = write_model_yaml(args.out, s.model.name, s.model, comment)
        # The vocabulary it was sized with: the family's tokenizer, at --vocab tokens if given.
        tokenizer = [f"tokenizer={fam.tokenizer}"] + ([f"tokenizer.vocab_size={args.vocab}"] if args.vocab else [])
        plan = llmexp.derive(llmexp.compose([f"model={s.model.name}", *tokenizer], config_dirs=[args.out]))
        if plan.params_total != s.n:
            raise ScalingError(f"{path}: llmexp plans {plan.params_total:,} parameters, the shape has {s.n:,}")
        print(f"wrote {path} ({plan.params_total:,} parameters, as llmexp plans it); train it with:\n"
              f"  python -m llmexp --config-dir {args.out} model={s.model.name} {' '.join(tokenizer)}".rstrip(), file=sys.stderr)


def cmd_isoflop(args) -> None:
    from llmexp.scaling.emit import COMMANDS_FILE, SWEEP_FILE, write_launchers
    from llmexp.scaling.study import StudySpec, design

    spec = StudySpec(name=args.name or args.out.name, budgets=args.budgets, family=args.family, sizes=args.sizes,
                     sizes_per_budget=args.sizes_per_budget, span=args.span, center=args.center, lr=args.lr,
                     batch_tokens=args.batch_tokens, warmup_fraction=args.warmup_fraction, overrides=args.overrides,
                     cooldowns=args.cooldowns)
    study = design(args.out, spec)
    files = write_launchers(study)
    print(f"{'run':<32} {'budget':>9} {'N':>12} {'D':>12} {'D/N':>6} {'steps':>6} {'batch':>6} {'lr':>8}")
    for r in study.runs:
        budget = f"{r.budget:>9.3g}" if r.budget else f"{r.role:>9}"
        after = f"  (resumes {r.after})" if r.after else ""
        print(f"{r.id:<32} {budget} {r.params:>12,} {r.tokens:>12,} {r.tokens / r.params:>6.1f} "
              f"{r.steps:>6} {r.global_batch_size:>6} {r.lr:>8.3g}{after}")
    for w in study.warnings:
        print(f"warning: {w}")
    if SWEEP_FILE not in files:  # cooldown chains: every link after the one it resumes
        print(f"\nstudy {args.out}: run it with\n  python -m llmexp.scaling run {args.out}        (here, resumable, "
              f"each link after the one it resumes)\n  or the commands in {files[COMMANDS_FILE]}, in order\n"
              f"then: python -m llmexp.scaling report {args.out} --target <FLOPs>")
        return
    print(f"\nstudy {args.out}: run it with any of\n"
          f"  python -m llmexp.scaling run {args.out}        (here, resumable)\n"
          f"  bash {files['multirun.sh']}                     (Hydra multirun)\n"
          f"  wandb sweep {files['sweep.yaml']}; wandb agent <sweep id>   (offline: python -m llmexp.sweep {files['sweep.yaml']})\n"
          f"  the commands in {files['commands.txt']}\n"
          f"then: python -m llmexp.scaling report {args.out} --target <FLOPs>")


def cmd_run(args) -> None:
    from llmexp.scaling.runner import run_study
    from llmexp.scaling.study import load

    study = load(args.study)
    outcome = run_study(study, jobs=args.jobs)
    print(f"{len(outcome.done)} runs finished, {len(outcome.skipped)} already done, {len(outcome.failed)} failed "
          f"in {outcome.seconds / 60:.1f} min")
    if outcome.failed:
        _fail("failed runs: " + ", ".join(r for r, _ in outcome.failed) + f" (logs in {study.root / 'logs'}); "
              "rerun to retry them", code=1)


def _fit(args):
    from llmexp.scaling.fit import fit_results
    from llmexp.scaling.results import collect, from_csv
    from llmexp.scaling.study import load

    if (args.study is None) == (args.points is None):
        raise ScalingError("give a study folder or --points CSV (one of them)")
    if not args.budget_tolerance >= 0:
        raise ScalingError(f"--budget-tolerance {args.budget_tolerance}: must be >= 0")
    study = load(args.study) if args.study else None
    results = collect(study) if study else from_csv(args.points)
    for run, why in results.excluded:
        print(f"left out {run}: {why}", file=sys.stderr)
    fit = fit_results(results, target=args.target, bootstrap=args.bootstrap, seed=args.seed,
                      starts=args.starts or None, level=args.level, flops=args.flops, outlier_rule=args.outliers,
                      tolerance=args.budget_tolerance)
    return fit, study, (study.root if study else args.points.parent)


def _iv(interval) -> str:
    return f" [{interval[0]:.4g}, {interval[1]:.4g}]" if interval else ""


def cmd_fit(args) -> None:
    from llmexp.scaling.fit import write
    from llmexp.scaling.report import holdout_line

    fit, _, folder = _fit(args)
    path = write(fit, folder)
    d = fit.to_dict()
    if args.json:
        print(json.dumps(d, indent=2))
        return
    print(f"{len(fit.results.points)} runs used, {len(fit.results.excluded)} left out; wrote {path}")
    print(f"FLOPs: {fit.count.label}; intervals: {fit.level:.0%}, {d['interval']}, {fit.bootstrap} resamples")
    for run, why in fit.results.excluded:
        if why.startswith("outlier"):
            print(f"  left out {run}: {why}")
    for key, label in (("envelope", "approach 1"), ("isoflop", "approach 2")):
        f = getattr(fit, key)
        if f:
            law, iv = f.law, d[key].get("intervals", {})
            print(f"{label}: N_opt = {law.kN:.4g} C^{law.a:.4f}{_iv(iv.get('a'))}, "
                  f"D_opt = {law.kD:.4g} C^{law.b:.4f}{_iv(iv.get('b'))}")
            for w in f.warnings:
                print(f"  warning: {w}")
        else:
            print(f"{label}: not fitted: {getattr(fit, key + '_reason')}")
    if fit.parametric:
        law = fit.parametric.law
        print(f"approach 3: L = {law.E:.4g} + {law.A:.4g}/N^{law.alpha:.4f} + {law.B:.4g}/D^{law.beta:.4f}")
        for w in fit.parametric.warnings:
            print(f"  warning: {w}")
    else:
        print(f"approach 3: not fitted: {fit.parametric_reason}")
    print(holdout_line(fit.holdout))
    for task, t in fit.tasks.items():
        print(f"loss -> {task} ({t.metric}): {t.low:.3g} + ({t.high:.3g} - {t.low:.3g}) / (1 + exp({t.k:.3g} (L - {t.L0:.4g}))), "
              f"{t.runs} runs, rmse {t.rmse:.3g}")
    pred = d.get("prediction", {})
    for key in ("envelope", "isoflop", "parametric"):
        if key in pred:
            entry = pred[key]
            loss = f", loss {entry['loss']:.4f}{_iv(entry.get('loss_interval'))}" if "loss" in entry else ""
            print(f"at {args.target:.4g} FLOPs ({fit.count.convention}, {key}): N_opt {entry['params']:.4g}"
                  f"{_iv(entry.get('params_interval'))}, D_opt {entry['tokens']:.4g}{_iv(entry.get('tokens_interval'))}{loss}")
    for task, entry in pred.get("tasks", {}).items():
        print(f"at {args.target:.4g} FLOPs: {task} {entry['metric']} {entry['score']:.3f}{_iv(entry['score_interval'])}")


def cmd_report(args) -> None:
    from llmexp.scaling.fit import write
    from llmexp.scaling.report import write_report

    fit, study, folder = _fit(args)
    write(fit, folder)
    print(f"wrote {write_report(fit, folder, study, args.wandb)}")


COMMANDS = {"plan": cmd_plan, "shape": cmd_shape, "isoflop": cmd_isoflop, "run": cmd_run, "fit": cmd_fit, "report": cmd_report}


def main(argv: Optional[Sequence[str]] = None) -> None:
    from llmexp.config.errors import ConfigError

    args = _parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except (ScalingError, ConfigError) as err:
        _fail(str(err))
    except KeyboardInterrupt:
        _fail("interrupted; rerun the same command to go on where it stopped", code=130)
