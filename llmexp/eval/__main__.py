"""lm-eval's own command line with the `llmexp` model registered and llmexp's tasks included.

    python -m llmexp.eval --model llmexp --model_args checkpoint=runs/my-run --tasks llmexp_smoke
    llmexp-lm-eval ...        (the same, as a console script)

lm-eval 0.4 finds models only in modules that have been imported (it has no plugin entry
points), so this imports the adapter and then hands every argument to lm-eval's CLI unchanged.
`--include_path` defaults to llmexp's task folder; give your own to replace it.
"""
from __future__ import annotations

import argparse
import os
import sys
from contextlib import contextmanager
from typing import Iterator, NoReturn, Optional, Sequence

from llmexp.config.errors import ConfigError, fail


def main(argv: Optional[Sequence[str]] = None) -> None:
    import llmexp.eval.lm  # noqa: F401  registers --model llmexp
    from lm_eval.__main__ import cli_evaluate

    from llmexp.eval import TASKS_DIR

    args = list(sys.argv[1:] if argv is None else argv)
    if "--include_path" not in args and not any(a.startswith("--include_path=") for a in args):
        args += ["--include_path", str(TASKS_DIR)]
    os.environ.setdefault("LMEVAL_LOG_LEVEL", "WARNING")  # a quiet console: results and errors, not lm-eval's INFO log
    sys.argv = ["lm_eval", *args]
    try:
        with _one_line_usage_errors():
            cli_evaluate()
    except (ConfigError, OSError, ValueError, KeyError) as err:  # a bad model path, task name or offline dataset
        if os.environ.get("LLMEXP_DEBUG"):
            raise
        fail(f"{type(err).__name__}: {str(err).strip() or type(err).__name__} (LLMEXP_DEBUG=1 shows the traceback)", "llmexp lm-eval")



@contextmanager
def _one_line_usage_errors() -> Iterator[None]:
    """lm-eval's parsers (built inside cli_evaluate, no hook to reach them) print argparse's usage
    block and the error: report the error alone, in llmexp's one line with exit 2."""
    def error(parser: argparse.ArgumentParser, message: str) -> NoReturn:
        fail(f"{message} (see llmexp lm-eval --help)", "llmexp lm-eval")

    original = argparse.ArgumentParser.error
    argparse.ArgumentParser.error = error
    try:
        yield
    finally:
        argparse.ArgumentParser.error = original


if __name__ == "__main__":
    main()
