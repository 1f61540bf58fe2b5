"""`python -m llmexp` / `llmexp`: compose -> validate -> derive -> (print plan | build -> run).

The command line is Hydra's: arguments are read by Hydra's own parser (`hydra._internal.utils.
get_args_parser`, the one `@hydra.main` uses), and everything that is Hydra's job — `--help`,
`--hydra-help`, `--cfg`, `--info`, `--shell-completion`, `--multirun` — is handed to a real
`@hydra.main` application (llmexp/multirun.py). A plain run takes the fast path: compose,
validate, plan and train without Hydra's output folders, so bad input exits with code 2 and one
line on stderr before torch or Lightning are imported.
"""
from __future__ import annotations

import argparse
import importlib
import signal
import sys
from typing import NoReturn, Optional, Sequence

from llmexp.config.errors import fail
from llmexp.multirun import search_of

# `llmexp <subcommand> ...`: tools beside the run itself; each module has `main(argv)`.
# tests/test_cli_contract.py runs every one of them.
SUBCOMMANDS = {
    "prepare": ("llmexp.data.cli", "tokenize a data mix into cached shards once, for many runs"),
    "export": ("llmexp.interop.cli", "write a run's checkpoint as a Hugging Face transformers folder"),
    "sweep": ("llmexp.sweep.__main__", "run a W&B sweep file offline on W&B's own sweep engine"),
    "scaling": ("llmexp.scaling.cli", "plan, run and fit scaling-law studies"),
    "lm-eval": ("llmexp.eval.__main__", "lm-eval's own CLI with --model llmexp and llmexp's offline tasks"),
    "generate": ("llmexp.generate_cli", "sample from a run, a transformers folder or hf:<name> (KV cache)"),
    "chat": ("llmexp.chat_cli", "talk to a model in its chat template, replies streamed"),
}

# Flags whose work is Hydra's: the command goes to the @hydra.main application.
HYDRA_FLAGS = ("help", "hydra_help", "cfg", "info", "shell_completion", "multirun", "experimental_rerun")
CFG_CHOICES = ("job", "hydra", "all")


def _error(message: str) -> NoReturn:
    fail(f"{message}; see python -m llmexp --help")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Hydra's parser, without argparse's prefix matching (`-c job` is --cfg, never --config-dir)."""
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()
    parser.prog = "llmexp"
    parser.allow_abbrev = False
    parser.error = _error  # one line, exit 2, like every other bad input
    args, unknown = parser.parse_known_intermixed_args(argv)  # `model=125m --cfg job dry_run=true`
    if unknown:
        _error(f"unknown option {unknown[0]!r}")
    modes = [flag for flag in ("run", "multirun", "cfg", "info", "shell_completion") if getattr(args, flag)]
    if len(modes) > 1:  # Hydra's own check, which raises a traceback
        _error(f"only one of --run, --multirun, --cfg, --info and --shell-completion can be given, not {' and '.join(modes)}")
    return args


def _bare_cfg(argv: Sequence[str]) -> list[str]:
    """A bare `--cfg` (llmexp before Hydra's CLI) means `--cfg job`."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg in ("--cfg", "-c") and (i + 1 == len(out) or out[i + 1] not in CFG_CHOICES):
            out.insert(i + 1, "job")
            break
    return out


def run_subcommand(name: str, argv: Sequence[str]) -> None:
    code = importlib.import_module(SUBCOMMANDS[name][0]).main(list(argv))
    if isinstance(code, int) and code:
        raise SystemExit(code)


def main(argv: Optional[Sequence[str]] = None) -> None:
    if argv is None:  # a command line: `llmexp ... | head` ends quietly when the reader leaves, as `cat` does
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    argv = list(sys.argv[1:] if argv is None else argv)
    from llmexp.sweep.overrides import agent_overrides

    argv = agent_overrides(argv)  # under a W&B sweep agent: values Hydra would misread, repaired
    if argv and argv[0] in SUBCOMMANDS:
        run_subcommand(argv[0], argv[1:])
        return
    argv = _bare_cfg(argv)
    args = parse_args(argv)
    if any(getattr(args, flag) for flag in HYDRA_FLAGS):
        from llmexp.multirun import hydra_app

        flags = list(argv)
        for override in args.overrides:
            flags.remove(override)
        hydra_app(args, [*flags, *args.overrides])  # Hydra's parser wants the overrides last
        return
    run_once(args)


def run_once(args: argparse.Namespace) -> None:
    from llmexp.api import derive
    from llmexp.config.compose import compose_dictconfig
    from llmexp.config.errors import ConfigError
    from llmexp.config.validate import validate

    search, sources = search_of(args), {}
    try:
        cfg = validate(compose_dictconfig(args.overrides, sources=sources, **search))
        plan = derive(cfg)
    except ConfigError as err:
        fail(str(err))
    from llmexp.dispatch import dispatch

    dispatch(cfg, plan, args.overrides, search["config_dirs"], sources)

if __name__ == "__main__":
    main()
