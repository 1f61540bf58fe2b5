"""IsoFLOP studies: for each compute budget a set of model sizes, each trained on the tokens
the budget buys at its exact FLOPs per token (llmexp.plan.flops_per_token), with batch size
and learning rate from rules of the budget.

A study is a folder:
  study.json             the design: spec, vocabulary, every run's shape, tokens, batch, lr
  conf/model/<id>.yaml   each run's model (named <id>), selectable as model=<id> with --config-dir conf
  conf/recipe/<id>.yaml  each run's budget, batch, lr and warmup: a preset's recipe is chosen by
                         its name, so `model=<id>` selects the whole run
  runs/<id>/             what each run leaves behind (docs/run-contract.md), put there by the
                         study-wide `run_dir=<study>/runs/${model.name}`
plus the study as a W&B grid sweep, a Hydra multirun script and a list of commands (emit.py).

With `cooldowns` (and optimizer=adamw_wsd) each (budget, size) becomes a chain of stable-phase
trunks and cooldown branches that resume them (llmexp.scaling.cooldown): several (N, D) points
per run.
"""
from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import List, Optional

import numpy as np
import yaml

import llmexp
from llmexp.config.schema import ModelConfig
from llmexp.plan import vocab_size_of
from llmexp.scaling import cooldown
from llmexp.scaling.errors import ScalingError
from llmexp.scaling.hparams import batch_sequences, parse_rule
from llmexp.scaling.laws import resolve_law
from llmexp.scaling.shapes import Shape, family, shape_for_params, write_model_yaml

STUDY_FILE = "study.json"
# Keys each run's recipe sets: a study-wide override of one would make every run the same.
PER_RUN_KEYS = ("model", "name", "run_dir", "trainer.max_tokens", "trainer.max_steps",
                "trainer.global_batch_size", "optimizer.lr", "optimizer.warmup_steps")
# ... and what a cooldown study sets per trunk and branch besides.
COOLDOWN_KEYS = ("resume", "optimizer.schedule", "trainer.checkpoint_every")
FEW_STEPS = 20


@dataclass
class StudySpec:
    name: str
    budgets: List[float]  # FLOPs, counted exactly (with attention)
    family: str = "tiny"
    sizes: Optional[List[float]] = None  # parameter targets used at every budget
    sizes_per_budget: int = 4  # otherwise: this many, log-spaced around the centre law's N_opt
    span: float = 8.0  # largest / smallest target around the centre
    center: str = "tpp"
    lr: str = "3e-3"
    batch_tokens: str = "4096"
    warmup_fraction: float = 0.1
    overrides: List[str] = field(default_factory=list)  # study-wide, on every run's command line
    cooldowns: Optional[List[float]] = None  # WSD branches at these fractions of each run's steps


@dataclass
class StudyRun:
    id: str
    budget: float
    model: dict
    params: int
    flops_per_token: int
    tokens: int
    steps: int
    global_batch_size: int
    lr: float
    warmup_steps: int
    role: str = "run"  # run | trunk (stable phase of a cooldown chain, no point) | branch
    after: Optional[str] = None  # the run this one resumes (cooldown chains)

    @property
    def flops(self) -> float:
        return float(self.flops_per_token) * self.tokens


@dataclass
class Study:
    root: Path
    spec: StudySpec
    vocab_size: int
    seq_len: int
    runs: List[StudyRun]
    warnings: List[str] = field(default_factory=list)

    @property
    def conf_dir(self) -> Path:
        return self.root / "conf"

    def run_dir(self, run: StudyRun) -> Path:
        return self.root / "runs" / run.id

    @property
    def overrides(self) -> List[str]:
        """Every run's command-line overrides besides model=<id>. The run folder and name follow
        the model's name by interpolation: the primary config sets both after any recipe."""
        return [f"run_dir={self.root / 'runs'}/${{model.name}}", "name=${model.name}", *self.spec.overrides]

    def command(self, run: StudyRun, python: str = "python") -> List[str]:
        # A cooldown link resumes the run before it: on the command line, since the primary
        # config sets `resume` after any recipe (as it does run_dir and name).
        resume = [f"resume={self.run_dir(self.run(run.after))}"] if run.after else []
        return [python, "-m", "llmexp", "--config-dir", str(self.conf_dir), f"model={run.id}", *self.overrides, *resume]

    def run(self, run_id: str) -> StudyRun:
        return next(r for r in self.runs if r.id == run_id)

    def to_dict(self) -> dict:
        return {"spec": asdict(self.spec), "vocab_size": self.vocab_size, "seq_len": self.seq_len,
                "runs": [asdict(r) for r in self.runs], "warnings": self.warnings}


def budget_tag(C: float) -> str:
    """1e13 -> '1e13', 2.5e13 -> '25e12': a budget (3 significant digits) in a run id, no dots."""
    mantissa, exponent = f"{C:.2e}".split("e")
    digits = mantissa.replace(".", "").rstrip("0") or "0"
    return f"{digits}e{int(exponent) - (len(digits) - 1)}"


def _check_spec(spec: StudySpec) -> None:
    if not spec.budgets:
        raise ScalingError("a study needs at least one budget")
    for C in spec.budgets:
        if not (C > 0 and math.isfinite(C)):
            raise ScalingError(f"budget {C}: must be a finite number of FLOPs > 0")
    if spec.sizes is None and spec.sizes_per_budget < 1:
        raise ScalingError(f"sizes per budget {spec.sizes_per_budget}: must be >= 1")
    if not spec.span >= 1:
        raise ScalingError(f"span {spec.span}: must be >= 1 (largest / smallest model)")
    if not 0 <= spec.warmup_fraction < 1:
        raise ScalingError(f"warmup fraction {spec.warmup_fraction}: must be in [0, 1)")
    for override in spec.overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if "=" not in override:
            raise ScalingError(f"override {override!r}: expected key=value")
        if key in PER_RUN_KEYS or (spec.cooldowns and key in COOLDOWN_KEYS):
            raise ScalingError(f"override {override!r}: {key} is set per run by the study")
    if spec.cooldowns is not None:
        cooldown.check_fractions(spec.cooldowns)


def _targets(spec: StudySpec, C: float) -> np.ndarray:
    if spec.sizes is not None:
        return np.asarray(spec.sizes, float)
    centre, _ = resolve_law(spec.center).optimal(C)
    return float(centre) * spec.span ** np.linspace(-0.5, 0.5, spec.sizes_per_budget)


def design(root: Path, spec: StudySpec) -> Study:
    """Lay the study out in `root` (model and recipe configs, study.json) and validate every run
    with llmexp.compose + llmexp.derive: each run's plan must train the designed N and D."""
    _check_spec(spec)
    root = Path(root)
    if (root / STUDY_FILE).exists():
        raise ScalingError(f"{root} already holds a study: choose another folder or remove it")
    created = not root.exists()
    try:
        return _design(root, spec)
    except BaseException:
        if created:  # leave no half-written study behind
            shutil.rmtree(root, ignore_errors=True)
        raise


def _design(root: Path, spec: StudySpec) -> Study:
    fam = family(spec.family)
    lr_rule, batch_rule = parse_rule(spec.lr, "lr"), parse_rule(spec.batch_tokens, "batch_tokens")
    base = _compose(spec.overrides, ())
    vocab = vocab_size_of(base)
    seq = base.trainer.seq_len or fam.max_seq_len

    warnings: List[str] = []
    chosen: List[tuple[float, str, Shape]] = []  # (budget, run id, shape)
    for C in sorted(set(spec.budgets)):
        targets = _targets(spec, C)
        shapes = {s.model.name: s for s in (shape_for_params(float(t), fam, vocab, seq) for t in targets)}
        if len(shapes) < len(targets):
            warnings.append(f"budget {C:.3g}: the size targets map to {len(shapes)} distinct {fam.name} shapes")
        chosen += [(C, f"c{budget_tag(C)}-{s.model.name}", s) for s in sorted(shapes.values(), key=lambda s: s.n)]

    conf = root / "conf"
    write_model_yaml(conf, chosen[0][1], replace(chosen[0][2].model, name=chosen[0][1]))
    # The runs' trainer settings (micro batch, devices) as the runs compose them: without a recipe.
    composed = _compose([f"model={chosen[0][1]}", *spec.overrides], [conf])
    trainer, optimizer = composed.trainer, composed.optimizer
    if spec.cooldowns and optimizer.schedule != "wsd":
        raise ScalingError(f"cooldowns need a warmup-stable-decay schedule (optimizer=adamw_wsd), the study's "
                           f"optimizer has schedule={optimizer.schedule}")
    world = trainer.devices * trainer.num_nodes

    runs = []
    for C, run_id, s in chosen:
        global_batch = batch_sequences(batch_rule(C), seq, trainer.micro_batch_size, world)
        tokens_per_step = global_batch * seq
        steps = round(C / s.flops_per_token / tokens_per_step)
        if steps < 1:
            raise ScalingError(
                f"run {run_id}: budget {C:.3g} FLOPs buys {C / s.flops_per_token:,.0f} tokens, less than one "
                f"step of {tokens_per_step:,}: raise the budget or lower the batch"
            )
        if steps < FEW_STEPS:
            warnings.append(f"run {run_id}: only {steps} optimizer steps")
        runs.append(StudyRun(
            id=run_id, budget=C, model={**vars(s.model), "name": run_id}, params=s.n,
            flops_per_token=s.flops_per_token, tokens=steps * tokens_per_step, steps=steps,
            global_batch_size=global_batch, lr=float(lr_rule(C)), warmup_steps=round(spec.warmup_fraction * steps),
        ))
    if spec.cooldowns:
        runs = [link for run in runs for link in cooldown.branches(run, spec.cooldowns, optimizer.decay_fraction,
                                                                      run.warmup_steps)]
    for run in runs:
        run.model = {**run.model, "name": run.id}
        m = run.model
        write_model_yaml(conf, run.id, ModelConfig(**m), f"{fam.name} family shape {fam.name}-d{m['d_model']}-l{m['n_layers']}: "
                         f"{run.params:,} parameters with a {vocab:,}-token vocabulary")
    study = Study(root, spec, vocab, seq, runs, warnings)
    for run in runs:
        _write_recipe(study, run)
        # Without a link's resume=: llmexp checks that the folder it resumes exists, not yet run.
        cfg = _compose([f"model={run.id}", *study.overrides], [conf])
        plan = llmexp.derive(cfg)
        got = (plan.params_total, plan.tokens, plan.flops_per_token, plan.seq_len)
        if cfg.run_dir != str(study.run_dir(run)) or got != (run.params, run.tokens, run.flops_per_token, seq):
            raise ScalingError(f"run {run.id}: llmexp plans (N, D, FLOPs/token, seq) = {got} in {cfg.run_dir}, the "
                               f"study designed {(run.params, run.tokens, run.flops_per_token, seq)} in {study.run_dir(run)}")
    save(study)
    return study


def _compose(overrides, config_dirs):
    try:
        return llmexp.compose(list(overrides), config_dirs=config_dirs)
    except llmexp.ConfigError as err:
        raise ScalingError(f"study overrides {' '.join(overrides)!r}: {err}") from None


def _write_recipe(study: Study, run: StudyRun) -> None:
    recipe = {
        "trainer": {"max_steps": None, "max_tokens": run.tokens, "global_batch_size": run.global_batch_size},
        "optimizer": {"lr": run.lr, "warmup_steps": run.warmup_steps},
    }
    if run.role != "run":  # a cooldown chain's link: its schedule, and the link it resumes
        extra = cooldown.recipe(run)
        recipe["trainer"].update(extra.get("trainer", {}))
        recipe["optimizer"].update(extra["optimizer"])
    path = study.conf_dir / "recipe" / f"{run.id}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"# @package _global_\n# IsoFLOP study {study.spec.name}: "
        + (f"budget {run.budget:.3g} FLOPs" if run.budget else f"cooldown {run.role}") + f", {run.params:,} parameters, "
        f"{run.tokens:,} tokens ({run.steps} steps).\n" + yaml.safe_dump(recipe, sort_keys=False)
    )


def save(study: Study) -> None:
    study.root.mkdir(parents=True, exist_ok=True)
    payload = {**study.to_dict(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    (study.root / STUDY_FILE).write_text(json.dumps(payload, indent=2))


def load(root: Path) -> Study:
    path = Path(root) / STUDY_FILE
    if not path.is_file():
        raise ScalingError(f"{root}: not a study folder (no {STUDY_FILE}); create one with `python -m llmexp.scaling isoflop`")
    d = json.loads(path.read_text())
    return Study(Path(root), StudySpec(**{"cooldowns": None, **d["spec"]}), d["vocab_size"], d["seq_len"],
                 [StudyRun(**r) for r in d["runs"]], d.get("warnings", []))
