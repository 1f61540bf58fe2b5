"""A sweep file's `command:` block -> the argv of one run, expanded as the W&B agent does.

The agent (wandb/wandb_agent.py, `Agent._command_run`) replaces `${envvar:NAME}` with
`create_sweep_command`, builds the argument lists with `create_sweep_command_args`, then swaps
each whole-item macro (`${env}`, `${interpreter}`, `${program}`, `${args_no_hyphens}`, ...) for
its list. `expand` calls the same two wandb functions and repeats that last swap (a loop inside
the agent's method, not a function of its own); tests/sweep check it against the agent itself.
"""
from __future__ import annotations

import platform
from typing import Any, Mapping, Optional, Sequence

from llmexp.sweep.compat import plain

ARGS_MACRO = "${args_no_hyphens}"
# Argument macros the agent knows (create_sweep_command_args); llmexp takes Hydra overrides only.
OTHER_ARG_MACROS = (
    "${args}", "${args_no_equals}", "${args_no_boolean_flags}", "${args_json}", "${args_json_file}",
    "${args_append_hydra}", "${args_override_hydra}",
)


def expand(
    command: Sequence[Any], params: Mapping[str, Any], program: Optional[str] = None,
    interpreter: str = "python",
) -> list[str]:
    """The argv the W&B agent runs for a run with `params`. The agent's interpreter is the word
    `python`; the offline driver passes its own `sys.executable` instead."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args

    # create_sweep_command edits its argument in place (and falls back to wandb's default
    # `${args}` command for an empty one): hand it a copy, never empty.
    chunks = create_sweep_command([str(c) for c in command]) if command else []
    macros = create_sweep_command_args({"args": {k: {"value": plain(v)} for k, v in params.items()}})
    macros["interpreter"] = [interpreter]
    macros["program"] = [program]
    if platform.system() != "Windows":
        macros["env"] = ["/usr/bin/env"]
    argv: list[str] = []
    for chunk in chunks:
        if chunk.startswith("${") and chunk.endswith("}"):
            argv += [str(a) for a in macros.get(chunk[2:-1]) or []]
        else:
            argv.append(chunk)
    return argv


def program_args(argv: Sequence[str]) -> Optional[list[str]]:
    """The arguments after `-m llmexp` (or an `llmexp` executable) in an expanded command: the
    fixed overrides and options every run of the sweep gets. None if the command runs no llmexp."""
    for i, item in enumerate(argv):
        if item == "-m" and i + 1 < len(argv) and argv[i + 1] == "llmexp":
            return list(argv[i + 2:])
        if item.rsplit("/", 1)[-1] == "llmexp" and (i == 0 or argv[i - 1] != "-m"):
            return list(argv[i + 1:])
    return None

