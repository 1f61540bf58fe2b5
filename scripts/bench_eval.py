"""lm-eval throughput of llmexp's adapter against lm-eval's own `hf` model, same checkpoint.

The model (an llmexp checkpoint, or by default the `tiny` preset with random weights and a
4,096-token BPE trained on Python's docs) is exported to a transformers folder; then, in this
process, both adapters answer the identical lm-eval requests of the smoke tasks (multiple
choice, perplexity, generation) with the same batch size, alternating, `--repeats` times each.
The best wall time per request type counts. Outputs are compared request by request
(log-likelihoods within --atol, greedy flags and generated text equal), and the task scores of
a full `simple_evaluate` of each are compared too.

    python scripts/bench_eval.py                          # tiny preset, batch 16
    python scripts/bench_eval.py --checkpoint runs/pretrain-tiny-xxxx --batch-size 32 --copies 4

Prints requests/s of each, the ratio llmexp / hf (target: >= 1.0) and whether scores match.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402


def _default_model(cache: Path):
    """The tiny preset's shape, random weights, and a 4,096-token BPE of the embedded corpus."""
    import llmexp
    from llmexp.data.sources import source_documents
    from llmexp.models import Llama
    from llmexp.stages.base import model_shape
    from llmexp.tokenizers import load_tokenizer

    os.environ.setdefault("LLMEXP_CACHE", str(cache))
    cfg = llmexp.compose(["model=tiny"])
    docs = [d for s in cfg.data.sources for d in source_documents(s)]
    tokenizer = load_tokenizer(cfg.tokenizer, "bench-eval", lambda: iter(docs))
    torch.manual_seed(0)
    return Llama(model_shape(cfg, tokenizer.n_vocab)).eval(), tokenizer


def _requests(tasks, limit, copies):
    """lm-eval Instances of the tasks, by request type (built by lm-eval's own task code)."""
    from llmexp.eval.harness import _manager_for

    manager = _manager_for(tasks)
    by_type: dict[str, list] = {}
    for task in manager.load(list(tasks))["tasks"].values():
        task.build_all_requests(limit=limit, rank=0, world_size=1)
        for inst in task.instances:
            by_type.setdefault(inst.request_type, []).append(inst)
    return {k: v * copies for k, v in by_type.items()}


def _timed(lm, kind, requests):
    start = time.perf_counter()
    out = getattr(lm, kind)(requests, disable_tqdm=True)
    return time.perf_counter() - start, out


def _same(kind, a, b, atol):
    if kind == "loglikelihood":
        return all(abs(x[0] - y[0]) <= atol and x[1] == y[1] for x, y in zip(a, b))
    if kind == "loglikelihood_rolling":
        return all(abs(x - y) <= atol * 10 for x, y in zip(a, b))
    return list(a) == list(b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="an llmexp run folder or .ckpt (default: tiny preset, random weights)")
    parser.add_argument("--tasks", nargs="+", default=["llmexp_smoke_mc", "llmexp_smoke_ppl", "llmexp_smoke_gen"])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--copies", type=int, default=2, help="repeat each request list this many times")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--atol", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from lm_eval.models.huggingface import HFLM

    from llmexp.eval.harness import evaluate, scores
    from llmexp.eval.lm import LlmexpLM
    from llmexp.interop.hf import save_hf_model
    from llmexp.interop.load import load_model

    tmp = Path(tempfile.mkdtemp(prefix="bench-eval-"))
    if args.checkpoint:
        loaded = load_model(args.checkpoint)
        model, tokenizer = loaded.model, loaded.tokenizer
    else:
        model, tokenizer = _default_model(tmp / "cache")
    folder = save_hf_model(model, tmp / "hf", tokenizer)
    ours = LlmexpLM.from_model(model, tokenizer, batch_size=args.batch_size, device="cpu")
    theirs = HFLM(pretrained=str(folder), dtype="float32", batch_size=args.batch_size, device="cpu")
    params = sum(p.numel() for p in model.parameters())
    print(f"model: {params:,} parameters, vocab {model.shape.vocab_size}, context {model.shape.max_seq_len}; "
          f"batch {args.batch_size}; torch threads {torch.get_num_threads()}")

    requests = _requests(args.tasks, args.limit, args.copies)
    report, all_same = {}, True
    for kind, reqs in requests.items():
        best = {"llmexp": float("inf"), "hf": float("inf")}
        outs = {}
        for _ in range(args.repeats):  # alternate, so load on the machine hits both alike
            for name, lm in (("llmexp", ours), ("hf", theirs)):
                seconds, outs[name] = _timed(lm, kind, reqs)
                best[name] = min(best[name], seconds)
        same = _same(kind, outs["llmexp"], outs["hf"], args.atol)
        all_same &= same
        report[kind] = {"requests": len(reqs), "llmexp_rps": len(reqs) / best["llmexp"],
                        "hf_rps": len(reqs) / best["hf"], "ratio": best["hf"] / best["llmexp"], "same_outputs": same}
        r = report[kind]
        print(f"{kind:24s} {r['requests']:5d} requests  llmexp {r['llmexp_rps']:8.1f}/s  hf {r['hf_rps']:8.1f}/s  "
              f"ratio {r['ratio']:.2f}x  outputs {'identical' if same else 'DIFFER'}")
    total = sum(r["requests"] for r in report.values())
    t_ours = sum(r["requests"] / r["llmexp_rps"] for r in report.values())
    t_hf = sum(r["requests"] / r["hf_rps"] for r in report.values())
    print(f"{'all':24s} {total:5d} requests  llmexp {total / t_ours:8.1f}/s  hf {total / t_hf:8.1f}/s  "
          f"ratio {t_hf / t_ours:.2f}x (target >= 1.0)")

    a = scores(evaluate(ours, args.tasks, limit=args.limit))
    b = scores(evaluate(theirs, args.tasks, limit=args.limit))
    scores_same = a.keys() == b.keys() and all(abs(a[k] - b[k]) <= 1e-6 * max(1.0, abs(b[k])) for k in a)
    for k in sorted(a):
        print(f"  {k:45s} llmexp {a[k]:.6g}  hf {b.get(k, float('nan')):.6g}")
    print(f"task scores {'identical' if scores_same else 'DIFFER'}")
    print(json.dumps({"requests": report, "ratio_all": t_hf / t_ours, "scores_identical": scores_same,
                      "outputs_identical": all_same}))
    raise SystemExit(0 if scores_same and all_same else 1)


if __name__ == "__main__":
    main()
