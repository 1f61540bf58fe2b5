"""`python -m llmexp` / `llmexp`: compose -> validate -> derive -> (print plan | build -> run).

Bad input exits with code 2 and one line on stderr, before torch or Lightning are imported.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence

from llmexp.config.errors import fail

# `llmexp <subcommand> ...`: tools beside the run itself; each module has `main(argv)`.
SUBCOMMANDS = {
    "prepare": ("llmexp.data.cli", "tokenize a data mix into cached shards once, for many runs"),
    "export": ("llmexp.interop.cli", "write a run's checkpoint as a Hugging Face transformers folder"),
    "sweep": ("llmexp.sweep.cli", "run a W&B sweep file offline on W&B's own sweep engine"),
    "scaling": ("llmexp.scaling.cli", "plan, run and fit scaling-law studies"),
    "generate": ("llmexp.generate_cli", "sample from a run, a transformers folder or hf:<name> (KV cache)"),
    "chat": ("llmexp.chat_cli", "talk to a model in its chat template, replies streamed"),
}

USAGE = """usage: python -m llmexp [--config-dir DIR] [--cfg] [-m] [key=value ...]
       python -m llmexp {prepare,export,sweep,scaling,generate,chat} ...   (each has --help)

Compose conf/ with Hydra overrides, validate, plan, and train (or print the plan).

  python -m llmexp                                  the embedded default (tiny model, CPU, offline)
  python -m llmexp model=7b dry_run=true            the plan of a 7B run; dry_run=json for tools
  python -m llmexp model=125m optimizer=adamw_wsd trainer.max_steps=2000
  python -m llmexp --config-dir ./my_conf model=my_model
  python -m llmexp -m model=tiny optimizer.lr=1e-3,3e-3   a Hydra multirun (launchers: hydra/launcher=...)

groups: model tokenizer data optimizer parallelism stage trainer logger plan experiment (see conf/)
options:
  --config-dir DIR, -cd DIR   add DIR to the config search path (repeatable)
  --cfg                       print the composed, validated config and exit
  -m, --multirun              run every combination of comma-separated overrides via Hydra
  -h, --help                  this text
"""


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="llmexp", add_help=False, usage=USAGE)
    parser.add_argument("-h", "--help", action="store_true")
    parser.add_argument("--config-dir", "-cd", action="append", default=[])
    parser.add_argument("--cfg", action="store_true")
    parser.add_argument("-m", "--multirun", action="store_true")
    parser.add_argument("overrides", nargs="*")
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        fail(f"unknown option {unknown[0]!r}: see python -m llmexp --help")
    return args


def main(argv: Optional[Sequence[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    from llmexp.sweep.overrides import agent_overrides

    argv = agent_overrides(argv)  # under a W&B sweep agent: values Hydra would misread, repaired
    if argv and argv[0] in SUBCOMMANDS:
        import importlib

        importlib.import_module(SUBCOMMANDS[argv[0]][0]).main(argv[1:])
        return
    args = _parse(argv)
    if args.help:
        print(USAGE)
        return
    if args.multirun:
        from llmexp.multirun import multirun

        multirun(args.overrides, args.config_dir)
        return

    from llmexp.api import compose, derive
    from llmexp.config.errors import ConfigError

    try:
        cfg = compose(args.overrides, args.config_dir)
        plan = derive(cfg)
    except ConfigError as err:
        fail(str(err))
    if cfg.pipeline:  # an experiment/ chain: every step is planned before the first one runs
        from llmexp.data.sources import DataError
        from llmexp.pipeline import pipeline_main
        from llmexp.run import PreflightError

        try:
            pipeline_main(cfg, args.overrides, args.config_dir)
        except (ConfigError, PreflightError, DataError) as err:
            fail(str(err))
        return
    if args.cfg:
        from omegaconf import OmegaConf

        print(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
        return
    if cfg.dry_run == "json":
        print(json.dumps(plan.to_dict(), indent=2))
        return
    if cfg.dry_run:
        from llmexp.plan import format_plan

        print(format_plan(plan))
        return
    from llmexp.execute import execute

    execute(cfg, plan, argv)
