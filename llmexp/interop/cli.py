"""`llmexp export <run folder | .ckpt> <out_dir> [--dtype D]`: a transformers folder.

The folder loads with `AutoModelForCausalLM.from_pretrained(out_dir)` and
`AutoTokenizer.from_pretrained(out_dir)` offline, and runs under `lm_eval --model hf`.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Sequence

from llmexp.config.errors import OneLineParser, fail
from llmexp.io import checkpoint_file_problem

DTYPES = ("float32", "bfloat16", "float16")


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = OneLineParser(
        prog="llmexp export",
        description="Write an llmexp checkpoint as a Hugging Face LlamaForCausalLM folder "
                    "(config.json, model.safetensors, tokenizer.json, tokenizer_config.json).",
    )
    parser.add_argument("source", help="an llmexp run folder (its checkpoints/last.ckpt) or a .ckpt file")
    parser.add_argument("out_dir", help="folder to write (created if missing)")
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="weight dtype (default float32)")
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder, for a .ckpt outside its run folder")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))

    problem = checkpoint_file_problem(args.source)
    if problem:
        fail(problem, "llmexp export")
    _check_out_dir(args.out_dir)
    import torch

    from llmexp.interop.hf import save_hf_model
    from llmexp.interop.load import load_model

    try:
        loaded = load_model(args.source, args.tokenizer)
        out = save_hf_model(loaded.model, args.out_dir, loaded.tokenizer, dtype=getattr(torch, args.dtype))
    except (OSError, ValueError) as err:
        fail(str(err), "llmexp export")
    print(f"exported {loaded.path} ({sum(p.numel() for p in loaded.model.parameters()):,} parameters, "
          f"{args.dtype}) to {out}\n  load it with transformers.AutoModelForCausalLM.from_pretrained({str(out)!r})")


if __name__ == "__main__":
    main()


def _check_out_dir(out_dir: str) -> None:
    path = Path(out_dir).expanduser()
    if path.exists() and not path.is_dir():
        fail(f"{out_dir} exists and is not a folder: name a folder to write", "llmexp export")
