"""Greedy decoding speed: `llmexp generate`'s KV-cache decoder vs transformers' generate on the
same exported folder, same process, same prompts (tokens/s and the ratio).

    python scripts/bench_generate.py [--preset smollm2_135m] [--new-tokens 64] [--batch 1] [--device cpu]

The model is the preset's shape with random weights (no download), exported once by llmexp;
both sides load that folder. On a shared machine the figures move with the load: compare the
ratio, measured back to back.
"""
from __future__ import annotations

import argparse
import tempfile
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="smollm2_135m")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    import llmexp
    from transformers import AutoModelForCausalLM

    from llmexp.generate import generate
    from llmexp.interop.hf import save_hf_model
    from llmexp.models import Llama
    from llmexp.models.hf import load_hf_model
    from llmexp.stages.base import model_shape

    cfg = llmexp.compose([f"model={args.preset}", "model.max_seq_len=512"])
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        save_hf_model(Llama(model_shape(cfg, cfg.model.vocab_size)), folder, family=cfg.model.family)
        ours = load_hf_model(folder).to(args.device).eval()
        theirs = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).to(args.device).eval()
    prompts = torch.randint(0, cfg.model.vocab_size, (args.batch, args.prompt_tokens), generator=torch.Generator().manual_seed(1))

    def run_ours():
        return generate(ours, prompts.tolist(), args.new_tokens)

    def run_theirs():
        with torch.no_grad():
            out = theirs.generate(prompts.to(args.device), max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                                  do_sample=False, attention_mask=torch.ones_like(prompts).to(args.device),
                                  pad_token_id=0)
        return out[:, args.prompt_tokens:].tolist()

    same = run_ours() == run_theirs()  # warm-up of both, and the tokens compared
    rates = {}
    for name, fn in (("llmexp", run_ours), ("transformers", run_theirs)):
        best = float("inf")
        for _ in range(args.repeats):
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
        rates[name] = args.batch * args.new_tokens / best
    print(f"{args.preset} (random weights) on {args.device}, batch {args.batch}, {args.prompt_tokens} prompt + "
          f"{args.new_tokens} new tokens, best of {args.repeats}, greedy tokens identical: {same}")
    for name, rate in rates.items():
        print(f"  {name:<13} {rate:8.1f} tokens/s")
    print(f"  ratio llmexp / transformers: {rates['llmexp'] / rates['transformers']:.2f}x")


if __name__ == "__main__":
    main()
