"""`llmexp generate <run | transformers folder | hf:org/name> --prompt TEXT ...`: sample from a
model on llmexp's KV-cache decoder (llmexp/generate.py).

Prompts come from --prompt (repeatable) or --prompts-file (one per line, or JSONL with a
"prompt" field); --chat wraps each as a user turn in the model's chat template. Results go to
stdout, or as JSONL to --out.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from llmexp.config.errors import OneLineParser, fail

DTYPES = ("float32", "bfloat16", "float16")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """Options generate and chat share: the model, the device, sampling."""
    parser.add_argument("source", help="an llmexp run folder or .ckpt, a transformers folder, or hf:<org>/<name>")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy (default)")
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--top-p", type=float, default=None)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--template", default="model",
                        help="chat template: model (its own; else chatml/plain), chatml, plain or a .jinja file")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:N")
    parser.add_argument("--dtype", choices=DTYPES, default="float32")


@dataclass
class Session:
    """A loaded model ready to sample from."""

    model: Any
    tokenizer: Any
    template: Any
    stop_ids: list[int]
    args: argparse.Namespace

    def sample(self, prompts: list[list[int]], on_token=None) -> list[list[int]]:
        import torch

        from llmexp.generate import generate

        generator = torch.Generator(device=next(self.model.parameters()).device).manual_seed(self.args.seed)
        return generate(self.model, prompts, self.args.max_new_tokens, temperature=self.args.temperature,
                        top_k=self.args.top_k, top_p=self.args.top_p, stop_token_ids=self.stop_ids,
                        generator=generator, on_token=on_token)

    def text(self, new_tokens: list[int]) -> str:
        """Generated tokens as text, the final stop token left out."""
        if new_tokens and new_tokens[-1] in self.stop_ids:
            new_tokens = new_tokens[:-1]
        return self.tokenizer.decode(new_tokens)


def open_session(args: argparse.Namespace, prog: str) -> Session:
    """Load the model, its tokenizer and chat template; bad input ends the command (exit 2)."""
    import torch

    from llmexp.config.errors import ConfigError
    from llmexp.data.chat import load_template, stop_id
    from llmexp.data.sources import DataError
    from llmexp.hub import HubError
    from llmexp.interop.load import load_model

    try:
        check_sampling(args)
        device = torch_device(args.device)
        loaded = load_model(args.source)
        template = load_template(args.template, loaded.tokenizer)
        stops = {stop_id(loaded.tokenizer, template), *eos_ids(loaded)}
    except (FileNotFoundError, ValueError, ConfigError, DataError, HubError, OSError) as err:
        fail(str(err), prog)
    model = loaded.language_model.to(device=device, dtype=getattr(torch, args.dtype)).eval()
    return Session(model, loaded.tokenizer, template, sorted(stops), args)


def check_sampling(args: argparse.Namespace) -> None:
    if args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens={args.max_new_tokens}: must be >= 1")
    if not args.temperature >= 0:
        raise ValueError(f"--temperature={args.temperature}: must be >= 0 (0 is greedy)")
    if args.top_k is not None and args.top_k < 1:
        raise ValueError(f"--top-k={args.top_k}: must be >= 1")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise ValueError(f"--top-p={args.top_p}: must be in (0, 1]")


def torch_device(name: str):
    """--device as a torch device; a CUDA device this machine does not have is bad input."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device={name}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not (torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()):
        raise ValueError(f"--device={name}: no such CUDA device on this machine (use cpu or auto)")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device={name}: expected auto, cpu, cuda or cuda:N")
    return device


def eos_ids(loaded) -> list[int]:
    """The end-of-sequence ids the model's own configs name (a converted transformers
    tokenizer's config.json / generation_config.json), or llmexp's <|endoftext|>."""
    from llmexp.interop.hf import special_token_ids

    folder = loaded.tokenizer.hf_files
    ids = [special_token_ids(loaded.tokenizer)["eos_token_id"]]
    if folder is not None and (folder / "generation_config.json").is_file():
        ids.append(json.loads((folder / "generation_config.json").read_text()).get("eos_token_id"))
    flat = [i for x in ids for i in (x if isinstance(x, list) else [x]) if i is not None]
    return flat or [loaded.tokenizer.eot_id]


def read_prompts(args: argparse.Namespace) -> list[str]:
    prompts = list(args.prompt or [])
    if args.prompts_file:
        path = Path(args.prompts_file)
        if not path.is_file():
            raise ValueError(f"--prompts-file {path}: no such file")
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            if path.suffix == ".jsonl":
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{n}: invalid JSON ({err.msg})") from None
                if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
                    raise ValueError(f"{path}:{n}: needs a string field 'prompt'")
                prompts.append(record["prompt"])
            else:
                prompts.append(line)
    if not prompts:
        raise ValueError("no prompts: give --prompt TEXT (repeatable) or --prompts-file FILE")
    if not args.chat and not all(prompts):
        raise ValueError("an empty prompt has no token to continue from: give text, or --chat (a user turn in the template)")
    return prompts


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = OneLineParser(prog="llmexp generate", description=__doc__.split("\n\n")[0])
    add_model_options(parser)
    parser.add_argument("--prompt", action="append", help="a prompt (repeatable)")
    parser.add_argument("--prompts-file", default=None, help="one prompt per line (.txt) or JSONL with 'prompt'")
    parser.add_argument("--chat", action="store_true", help="each prompt is a user turn in the chat template")
    parser.add_argument("--system", default=None, help="with --chat: a system prompt")
    parser.add_argument("--out", default=None, help="write JSONL here (prompt, completion, token ids)")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        prompts = read_prompts(args)
    except ValueError as err:
        fail(str(err), "llmexp generate")
    session = open_session(args, "llmexp generate")
    ids = [prompt_ids(session, p, args.chat, args.system) for p in prompts]
    outputs = session.sample(ids)
    rows = [{"prompt": p, "completion": session.text(o), "prompt_tokens": len(i), "new_tokens": o}
            for p, i, o in zip(prompts, ids, outputs)]
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"wrote {len(rows)} completions to {args.out}")
    else:
        for row in rows:
            print(row["prompt"] + row["completion"] if not args.chat else row["completion"])


def prompt_ids(session: Session, prompt: str, chat: bool, system: Optional[str] = None) -> list[int]:
    if not chat:
        return session.tokenizer.encode(prompt)
    from llmexp.data.chat import render

    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    return render(session.tokenizer, session.template, messages, generation_prompt=True).ids


if __name__ == "__main__":
    main()
