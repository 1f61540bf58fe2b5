"""`llmexp prepare [overrides...]`: clean and tokenize a data mix into the shard cache once, so
that a cluster job prepares and many runs (same data, cleaning and tokenizer) start at once.

Takes the same overrides as a run (only `data` and `tokenizer` matter); prints the cleaning
report of each source (documents and bytes in/out per step, also in <source>/clean/report.json),
token counts and bytes per token of each source, and where the shards are. Exit 2 on bad input.
"""
from __future__ import annotations

import json
import sys
import time
from typing import Optional, Sequence

from llmexp.config.errors import OneLineParser, fail

USAGE = """usage: llmexp prepare [--config-dir DIR] [--verify] [--json] [key=value ...]

  llmexp prepare data=mix_local 'data.sources.0.path=~/corpus/**/*.md' tokenizer=bpe_32k
  llmexp prepare data=embedded --verify      re-hash every shard (sha256) and rebuild bad ones
  llmexp prepare data=mix_local data.executor=slurm data.slurm_partition=cpu data.tasks=64
                                             clean on SLURM array jobs; run again when they finish
"""


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = OneLineParser(prog="llmexp prepare", usage=USAGE)
    parser.add_argument("--config-dir", "-cd", action="append", default=[])
    parser.add_argument("--verify", action="store_true", help="check every shard's sha256, not only its size")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object at the end")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))

    from llmexp.api import compose
    from llmexp.config.errors import ConfigError
    from llmexp.data.engine import Submitted
    from llmexp.data.prepare import prepare_data
    from llmexp.data.sources import DataError

    started = time.perf_counter()
    try:
        cfg = compose(args.overrides, args.config_dir)
        log = (lambda m: print(m, file=sys.stderr, flush=True)) if args.json else (lambda m: print(m, flush=True))
        data = prepare_data(cfg, verify=args.verify, log=log)
    except Submitted as submitted:  # data.executor=slurm: the jobs run; a later prepare continues
        print(f"llmexp: {submitted}")
        return
    except (ConfigError, DataError) as err:
        fail(str(err))
    except OSError as err:  # the environment: offline downloads, unreadable or unwritable paths
        fail(f"{err}; check the paths, permissions, free disk space and network access")
    if args.json:
        print(json.dumps(data.summary(), indent=2))
        return
    print(data.describe())
    print(f"ready in {time.perf_counter() - started:.1f} s; runs with the same data and tokenizer settings reuse it")
