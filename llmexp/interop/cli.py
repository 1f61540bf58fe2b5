"""`llmexp export <run folder | .ckpt | HF folder | hf:...> <out_dir> [--dtype D] [--adapter]`:
a transformers folder.

Every run kind exports: a language model as <Family>ForCausalLM; a LoRA run merged (default)
or, with --adapter, as a PEFT adapter folder for its base; a reward model as
<Family>ForSequenceClassification. The folder loads with transformers' Auto classes offline,
carries a chat template, and runs under `lm_eval --model hf`.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Sequence

from llmexp.artifacts import is_run_folder
from llmexp.config.errors import OneLineParser, fail
from llmexp.io import checkpoint_file_problem

DTYPES = ("float32", "bfloat16", "float16")


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = OneLineParser(
        prog="llmexp export",
        description="Write an llmexp checkpoint as a Hugging Face folder (config.json, model.safetensors, "
                    "tokenizer files with a chat template).",
    )
    parser.add_argument("source", help="an llmexp run folder (its checkpoints/last.ckpt), a .ckpt file, "
                                       "a transformers folder or hf:<org>/<name>")
    parser.add_argument("out_dir", help="folder to write (created if missing)")
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="weight dtype (default float32)")
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder, for a .ckpt outside its run folder")
    parser.add_argument("--adapter", action="store_true",
                        help="a LoRA run: write the PEFT adapter folder (adapter_config.json + "
                             "adapter_model.safetensors) instead of merged weights")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))

    problem = checkpoint_file_problem(args.source)
    if problem:
        fail(problem, "llmexp export")
    _check_out_dir(args.out_dir)
    import torch

    from llmexp.config.errors import ConfigError
    from llmexp.hub import HubError
    from llmexp.interop.hf import save_hf_model, save_peft_adapter, save_reward_model
    from llmexp.interop.load import load_model
    from llmexp.models.heads import ScalarModel

    try:
        loaded = load_model(args.source, args.tokenizer)
        template = export_chat_template(loaded)
        dtype = getattr(torch, args.dtype)
        if args.adapter:
            if loaded.lora_state is None:
                raise ValueError(f"{loaded.path} is not a LoRA run (stage.lora.enabled=true): drop --adapter")
            stage = loaded.config["stage"]
            out = save_peft_adapter(loaded.lora_state, stage["lora"], args.out_dir, loaded.config.get("init_from"),
                                    loaded.tokenizer, template)
            what = f"LoRA adapter (rank {stage['lora']['rank']}) for base {loaded.config.get('init_from')}"
        elif isinstance(loaded.model, ScalarModel):
            out = save_reward_model(loaded.model, args.out_dir, loaded.tokenizer, dtype, loaded.family, template)
            what = "reward model (ForSequenceClassification)"
        else:
            out = save_hf_model(loaded.model, args.out_dir, loaded.tokenizer, dtype, loaded.family, template)
            what = "merged LoRA model" if loaded.lora_state is not None else "model"
    except (OSError, ValueError, ConfigError, HubError) as err:
        fail(str(err), "llmexp export")
    print(f"exported {loaded.path} ({what}, {sum(p.numel() for p in loaded.model.parameters()):,} parameters, "
          f"{args.dtype}) to {out}")


def _check_out_dir(out_dir: str) -> None:
    path = Path(out_dir).expanduser()
    if path.exists() and not path.is_dir():
        fail(f"{out_dir} exists and is not a folder: name a folder to write", "llmexp export")
    # A transformers folder written over a run folder would make it both (init_from, export and
    # resume could no longer tell which), and the run folder has one writer: the run.
    if is_run_folder(path):
        fail(f"{out_dir} is an llmexp run folder: export to a folder of its own (e.g. {path.name}-hf)", "llmexp export")


def export_chat_template(loaded) -> Optional[str]:
    """The Jinja template an export with llmexp's tokenizer carries: the one the run trained
    with (stage.chat_template; `model` for a pretraining run: ChatML when the tokenizer
    reserves its tokens, else plain). A transformers tokenizer's own is written back verbatim."""
    from llmexp.data.chat import JinjaTemplate, jinja_of, load_template

    if loaded.tokenizer.hf_files is not None:
        return None
    template = load_template(((loaded.config or {}).get("stage") or {}).get("chat_template") or "model", loaded.tokenizer)
    return template.source if isinstance(template, JinjaTemplate) else jinja_of(template)


if __name__ == "__main__":
    main()
