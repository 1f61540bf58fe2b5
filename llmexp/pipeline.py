"""Pipelines: an experiment/ config whose `pipeline` lists steps (pretrain -> sft -> dpo, ...).

Every step is composed, validated and planned before the first one runs. A step's config is
the command line's (the experiment and any overrides) + `init_from=<previous step's run folder>`
+ the step's own overrides; `{step:<name>}` in an override is that step's run folder (e.g.
`stage.reward_model={step:reward}`). Steps run in order, each in `<pipeline run folder>/<i>-<name>`,
a complete run folder of its own (docs/run-contract.md); a finished step is not run again, so
rerunning the command resumes the chain.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from llmexp.config.errors import ConfigError
from llmexp.config.schema import Config
from llmexp.io import atomic_write_text
from llmexp.execute import run_config
from llmexp.plan import Plan, format_plan
from llmexp.rundir import config_dict, experiment_hash

STEP_REF = re.compile(r"\{step:([^}]+)\}")


@dataclass
class Step:
    name: str
    overrides: list[str]
    cfg: Config
    plan: Plan
    run_dir: Path


def pipeline_dir(cfg: Config) -> Path:
    if cfg.run_dir:
        return Path(cfg.run_dir).expanduser().resolve()
    return (Path(cfg.out_dir).expanduser() / f"{cfg.name or 'pipeline'}-{experiment_hash(cfg)}").resolve()


def plan_pipeline(cfg: Config, argv: Sequence[str], config_dirs: Iterable[str] = ()) -> list[Step]:
    """Compose, validate and derive every step; ConfigError names the step and the key."""
    from llmexp.api import compose, derive

    root = pipeline_dir(cfg)
    common = [a for a in argv if not a.startswith(("run_dir=", "resume="))]
    folders = {s.name: root / f"{i}-{s.name}" for i, s in enumerate(cfg.pipeline)}
    if len(folders) != len(cfg.pipeline):
        raise ConfigError("pipeline", [s.name for s in cfg.pipeline], "step names must be unique")
    steps: list[Step] = []
    planned: dict[str, dict] = {}  # the steps' run folders, before they exist: what later steps validate against
    for i, spec in enumerate(cfg.pipeline):
        def resolve(text: str) -> str:
            def sub(match: re.Match) -> str:
                name = match.group(1)
                if name not in folders or list(folders).index(name) >= i:
                    raise ConfigError(f"pipeline.{i}.overrides", text, f"{{step:{name}}} must name an earlier step")
                return str(folders[name])
            return STEP_REF.sub(sub, text)

        start = [f"init_from={steps[-1].run_dir}"] if steps else []
        overrides = [*common, *start, *map(resolve, spec.overrides), "pipeline=[]", f"run_dir={folders[spec.name]}"]
        try:
            step_cfg = compose(overrides, config_dirs, planned)
        except ConfigError as err:
            raise ConfigError(f"pipeline.{i}({spec.name}).{err.key}", err.value, err.allowed) from None
        planned[str(folders[spec.name])] = config_dict(step_cfg)
        steps.append(Step(spec.name, overrides, step_cfg, derive(step_cfg), folders[spec.name]))
    return steps


def describe(steps: list[Step]) -> str:
    lines = [f"pipeline: {len(steps)} steps, {' -> '.join(s.name for s in steps)}"]
    for i, s in enumerate(steps):
        lines += [f"\n[{i}] {s.name}: stage={s.cfg.stage.name} run_dir={s.run_dir}"
                  + (f" init_from={s.cfg.init_from}" if s.cfg.init_from else ""), format_plan(s.plan)]
    return "\n".join(lines)


def run_pipeline(cfg: Config, argv: Sequence[str], config_dirs: Iterable[str] = ()) -> list[dict]:
    """Plan every step, then run them in order; returns each step's summary."""
    steps = plan_pipeline(cfg, argv, config_dirs)
    root = pipeline_dir(cfg)
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / "pipeline.json", json.dumps(
        [{"name": s.name, "run_dir": str(s.run_dir), "overrides": s.overrides, "plan": s.plan.to_dict()} for s in steps],
        indent=2))
    print(describe(steps), flush=True)
    summaries = []
    for i, s in enumerate(steps):
        done = s.run_dir / "summary.json"
        if done.is_file() and json.loads(done.read_text()).get("status") == "finished":
            print(f"\n[{i}] {s.name}: finished earlier in {s.run_dir}", flush=True)
            summaries.append(json.loads(done.read_text()))
            continue
        print(f"\n[{i}] {s.name}: running in {s.run_dir}", flush=True)
        summaries.append(run_config(s.cfg, s.plan, s.overrides))
    atomic_write_text(root / "summary.json", json.dumps(
        {"status": "finished", "steps": [{"name": s.name, **m} for s, m in zip(steps, summaries)]}, indent=2))
    return summaries


def pipeline_main(cfg: Config, argv: Sequence[str], config_dirs: Iterable[str] = ()) -> None:
    """The CLI's branch for a config with a pipeline (dry_run prints every step's plan)."""
    if cfg.dry_run:
        steps = plan_pipeline(cfg, argv, config_dirs)
        if cfg.dry_run == "json":
            print(json.dumps([{"name": s.name, "run_dir": str(s.run_dir), "plan": s.plan.to_dict()} for s in steps], indent=2))
        else:
            print(describe(steps))
        return
    run_pipeline(cfg, argv, config_dirs)
