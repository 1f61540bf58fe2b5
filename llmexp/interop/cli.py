"""`llmexp export <run folder | .ckpt> <out_dir> [--dtype D]`: a transformers folder.

The folder loads with `AutoModelForCausalLM.from_pretrained(out_dir)` and
`AutoTokenizer.from_pretrained(out_dir)` offline, and runs under `lm_eval --model hf`.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

DTYPES = ("float32", "bfloat16", "float16")


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        prog="llmexp export",
        description="Write an llmexp checkpoint as a Hugging Face LlamaForCausalLM folder "
                    "(config.json, model.safetensors, tokenizer.json, tokenizer_config.json).",
    )
    parser.add_argument("source", help="an llmexp run folder (its checkpoints/last.ckpt) or a .ckpt file")
    parser.add_argument("out_dir", help="folder to write (created if missing)")
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="weight dtype (default float32)")
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder, for a .ckpt outside its run folder")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))

    import torch

    from llmexp.interop.hf import save_hf_model
    from llmexp.interop.load import load_model

    try:
        loaded = load_model(args.source, args.tokenizer)
        out = save_hf_model(loaded.model, args.out_dir, loaded.tokenizer, dtype=getattr(torch, args.dtype))
    except (FileNotFoundError, ValueError) as err:
        print(f"llmexp export: error: {err}", file=sys.stderr)
        raise SystemExit(2)
    print(f"exported {loaded.path} ({sum(p.numel() for p in loaded.model.parameters()):,} parameters, "
          f"{args.dtype}) to {out}\n  load it with transformers.AutoModelForCausalLM.from_pretrained({str(out)!r})")


if __name__ == "__main__":
    main()
