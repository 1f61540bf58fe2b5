"""Benchmark: tokenize-and-shard throughput against raw tiktoken, and peak memory.

    python scripts/bench_data.py --mb 1000 --procs 2        # 1 GB synthetic corpus
    python scripts/bench_data.py --mb 50 --bpe-mb 30        # plus BPE training time on 30 MB
    python scripts/bench_data.py --web --mb 200             # web HTML: clean + MinHash + tokenize on datatrove
    python scripts/bench_data.py --web --mb 1 --tasks 2 --shard-mb 0.2 --rounds 2   # a small run (tests/data/test_data_scale.py)

--web: synthetic web pages (boilerplate around prose, 5% repeated) cleaned with conf/data/web.yaml's
chain (trafilatura, PII masks, language, toxicity, Gopher/C4/FineWeb, exact + MinHash dedup), then
tokenized, all on datatrove: MB of HTML per second per core with 1 and 2 workers
(LocalPipelineExecutor), and the same steps, MinHash stages and tokenization run by datatrove
directly in the same run (its JsonlReader, no reports; then its ParquetReader over the same split
parts into the same shard writer, no resume checks):
llmexp_clean_vs_direct = direct cleaning seconds / llmexp's cleaning seconds (read through MinHash
to the split parts), llmexp_vs_direct = the same for the whole pipeline, tokenization included.
The two alternate which runs first (per worker count and per round); --rounds N gives medians.

Builds a synthetic JSONL corpus (paragraphs of Python's reference documentation, reshuffled
and numbered so that documents differ), then in a child process runs llmexp's preparation
(read + clean + split into Parquet parts, then tokenize into shards with --procs datatrove workers)
and reports its own and its workers' peak RSS. Back in this process it times raw tiktoken
`encode_ordinary_batch(num_threads=--procs)` on the same documents (read back from the
cleaned parts, one part at a time, timing only the encode calls) — and once more before
llmexp's run, on the JSONL as written (the same documents: default cleaning drops none), since
a shared machine's load drifts — and prints the ratio llmexp tokens/s : raw tiktoken tokens/s
(raw = the mean rate of the two).
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MB = 1_000_000


def cpu_seconds(who=resource.RUSAGE_SELF) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def make_corpus(folder: Path, mb: int, seed: int = 0) -> int:
    """~mb MB of JSONL in 64 MB files; returns the number of documents."""
    from llmexp.data.sources import embedded_documents

    paragraphs = [p for d in embedded_documents() for p in d.split("\n\n") if len(p) > 80]
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    n_docs, written, part = 0, 0, 0
    f = None
    while written < mb * MB:
        if f is None or f.tell() > 64 * MB:
            if f:
                f.close()
            f = open(folder / f"part-{part:04d}.jsonl", "w")
            part += 1
        text = f"Document {n_docs}.\n\n" + "\n\n".join(rng.sample(paragraphs, rng.randint(3, 12)))
        line = json.dumps({"text": text}) + "\n"
        f.write(line)
        written += len(line)
        n_docs += 1
    f.close()
    return n_docs


def run_prepare(corpus: Path, cache: Path, procs: int, tokenizer: str) -> dict:
    """Child process: clean + tokenize with llmexp; timings and peak RSS."""
    import llmexp
    from llmexp.data.prepare import SourceData, clean_sources, tokenize_sources
    from llmexp.tokenizers import load_tokenizer

    cfg = llmexp.compose(["data=jsonl", f"data.sources.0.path={corpus}", f"tokenizer={tokenizer}",
                          f"data.workers={procs}", f"data.cache_dir={cache}"])
    t0 = time.perf_counter()
    [(folder, report)] = clean_sources(cfg.data.sources, cfg.data, cache / "data", lambda m: None)
    t1 = time.perf_counter()
    tok = load_tokenizer(cfg.tokenizer, "", lambda: iter(()))
    source = SourceData("bench", 1.0, folder, report)
    cpu0 = cpu_seconds() + cpu_seconds(resource.RUSAGE_CHILDREN)
    tokenize_sources([source], tok, cfg.data, cache / "data", lambda m: None)
    t2 = time.perf_counter()
    # This process and its children; datatrove's workers are the forkserver's children, counted
    # only with one worker (in-process): cpu_ratio is reported for --procs 1 only.
    tokenize_cpu = cpu_seconds() + cpu_seconds(resource.RUSAGE_CHILDREN) - cpu0
    splits = source.index["splits"]
    tokens = sum(m["tokens"] for s in splits.values() for m in s)
    docs = sum(m["docs"] for s in splits.values() for m in s)
    text_bytes = sum(m["text_bytes"] for s in splits.values() for m in s)
    return {
        "clean_seconds": t1 - t0, "tokenize_seconds": t2 - t1, "tokenize_cpu_seconds": tokenize_cpu,
        "tokens": tokens, "docs": docs,
        "text_bytes": text_bytes, "parts": [str(folder / "clean" / p) for s in ("train", "val") for p in report[s]["parts"]],
        "peak_rss_main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_rss_worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def raw_tiktoken(batches, procs: int, tokenizer: str) -> tuple[float, int, float]:
    """Wall seconds spent in encode_ordinary_batch over every batch of documents, tokens, and
    the CPU seconds of those calls (all threads)."""
    from llmexp.tokenizers.tokenizer import _named_encoding

    enc = _named_encoding(tokenizer)
    seconds, tokens, cpu = 0.0, 0, 0.0
    for texts in batches:
        t, c = time.perf_counter(), cpu_seconds()
        ids = enc.encode_ordinary_batch(texts, num_threads=procs)
        seconds += time.perf_counter() - t
        cpu += cpu_seconds() - c
        tokens += sum(map(len, ids))
        del ids, texts
    return seconds, tokens, cpu


def jsonl_batches(corpus: Path):
    """The corpus as written, one file (64 MB) at a time."""
    for path in sorted(corpus.glob("*.jsonl")):
        with open(path) as f:
            yield [json.loads(line)["text"] for line in f]


def part_batches(parts: list[str]):
    """The cleaned documents llmexp tokenized, one Parquet part at a time."""
    import pyarrow.parquet as pq

    for part in parts:
        yield pq.read_table(part, columns=["text"]).column(0).to_pylist()


def bench_bpe(corpus: Path, mb: int) -> dict:
    from llmexp.data.sources import iter_documents
    from llmexp.config.schema import SourceConfig
    from llmexp.tokenizers.bpe import train_bpe
    from llmexp.tokenizers.tokenizer import _limit_bytes

    texts = list(_limit_bytes(iter_documents(SourceConfig(kind="jsonl", path=str(corpus))), mb * MB))
    t = time.perf_counter()
    ranks = train_bpe(iter(texts), 32000 - 4)
    return {"bpe_mb": sum(len(x.encode()) for x in texts) / MB, "bpe_vocab": len(ranks) + 4,
            "bpe_seconds": time.perf_counter() - t}


# ---------------------------------------------------------------- web cleaning on datatrove

NAV = "<nav>Home | News | Sport | Weather | Contact us | Subscribe</nav>"
FOOTER = "<footer>Copyright 2026 Example Media Ltd. All rights reserved. Privacy | Cookies | Terms</footer>"


def make_web_corpus(folder: Path, mb: int, files: int = 4, seed: int = 0) -> int:
    """~mb MB of synthetic web pages as JSONL ({url, html}) in `files` files: prose paragraphs (the
    words of Python's reference documentation, in sentences with English function words) inside
    navigation, header, sidebar and footer boilerplate; every 20th page repeats an earlier one."""
    from llmexp.data.sources import embedded_documents

    vocab = sorted({w for d in embedded_documents() for w in d.split() if w.isalpha() and 3 <= len(w) <= 12})
    rng = random.Random(seed)
    glue = ("the", "of", "and", "to", "in", "that", "with", "is", "for", "as")

    def sentence() -> str:
        words = [rng.choice(glue) if i % 3 == 1 else rng.choice(vocab) for i in range(rng.randint(9, 24))]
        return " ".join(words).capitalize() + "."

    paragraphs = [" ".join(sentence() for _ in range(rng.randint(3, 7))) for _ in range(5000)]
    folder.mkdir(parents=True, exist_ok=True)
    outs = [open(folder / f"crawl-{i:02d}.jsonl", "w") for i in range(files)]
    pages, written, n = [], 0, 0
    while written < mb * MB:
        body = pages[rng.randrange(len(pages))] if pages and n % 20 == 19 else \
            "".join(f"<p>{p}</p>" for p in rng.sample(paragraphs, rng.randint(4, 10)))
        pages.append(body)
        html = (f"<html><head><title>Page {n}</title></head><body>{NAV}<header><h1>Page {n}</h1></header>"
                f"<article>{body}</article><aside>Related: more | most read | newsletter</aside>{FOOTER}</body></html>")
        line = json.dumps({"url": f"https://site{n % 97}.example.com/page/{n}", "html": html}) + "\n"
        outs[n % files].write(line)
        written += len(line)
        n += 1
    for f in outs:
        f.close()
    return n


def web_config(corpus: Path, cache: Path, workers: int, tasks: int, shard_mb: float):
    import llmexp

    return llmexp.compose(["data=web", f"data.sources.0.path={corpus}", "tokenizer=cl100k_base", f"data.cache_dir={cache}",
                           f"data.workers={workers}", f"data.tasks={tasks}", "data.val_fraction=0.05",
                           f"data.shard_bytes={int(shard_mb * MB)}"])


def run_web_prepare(corpus: Path, cache: Path, workers: int, tasks: int, shard_mb: float) -> dict:
    """Child process: llmexp's prepare of the web corpus (clean + MinHash + split, then tokenize),
    all on datatrove."""
    from llmexp.data.prepare import prepare_data

    cfg = web_config(corpus, cache, workers, tasks, shard_mb)
    t0 = time.perf_counter()
    lines = []
    data = prepare_data(cfg, log=lines.append)
    seconds = time.perf_counter() - t0
    tokenize = next(x for x in lines if "s of tokenization" in x)  # "... (12.3 s of tokenization for the mix)"
    return {"seconds": seconds, "clean_seconds": data.sources[0].clean["seconds"],  # read .. MinHash .. parts
            "tokenize_seconds": float(tokenize.rsplit("(", 1)[1].split(" s of")[0]),
            "tokens": sum(s.tokens("train") + s.tokens("val") for s in data.sources),
            "shards": [m["sha256"] for s in data.sources for split in ("train", "val") for m in s.index["splits"][split]],
            "parts": [f"{s.folder.name}/clean/{p}" for s in data.sources for split in ("train", "val") for p in s.clean[split]["parts"]],
            "data_root": str(data.sources[0].folder.parent),
            "clean_report": [x for x in lines if "docs" in x]}


def run_web_direct(corpus: Path, work: Path, workers: int, tasks: int, shard_mb: float, prepared: dict) -> dict:
    """Child process: the same steps (llmexp's clean_steps, unwrapped from their reports) and the
    same MinHash stages, read by datatrove's JsonlReader and run by its LocalPipelineExecutor; then
    the parts llmexp split (`prepared`) tokenized by datatrove's ParquetReader into the same shard
    writer, one task per part."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader, ParquetReader
    from datatrove.pipeline.writers import JsonlWriter

    import llmexp
    from llmexp.data.clean import clean_steps
    from llmexp.data.engine import MixCleaning, ShardWriter, datatrove_logs_to_files
    from llmexp.tokenizers import load_tokenizer

    cfg = web_config(corpus, work / "cache", workers, tasks, shard_mb)
    source = cfg.data.sources[0]
    steps = [s.inner for s in clean_steps(source.clean, str(work / "unused"))]
    pipeline = [JsonlReader(str(corpus), text_key="html", glob_pattern="*.jsonl",
                            default_metadata={"source": source.name, "slot": "000-web"}), *steps,
                JsonlWriter(str(work / "filtered"), output_filename="000-web/${rank}.jsonl.gz")]
    first = LocalPipelineExecutor(pipeline, tasks=tasks, workers=workers, logging_dir=str(work / "logs" / "clean"))
    minhash = MixCleaning([source], cfg.data, work)._minhash(first)
    minhash[-1].pipeline[1] = minhash[-1].pipeline[1].inner  # no per-source report
    t0 = time.perf_counter()
    with datatrove_logs_to_files():
        minhash[-1].run()
    clean_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    tok = load_tokenizer(cfg.tokenizer, "", lambda: iter(()))
    tok.save(work / "tokenizer")
    paths = work / "parts.txt"
    paths.write_text("".join(p + "\n" for p in prepared["parts"]))
    for part in prepared["parts"]:
        (work / "shards" / part).parent.parent.joinpath("tokens", tok.name).mkdir(parents=True, exist_ok=True)
    reader = ParquetReader(prepared["data_root"], paths_file=str(paths), batch_size=256,
                           adapter=lambda self, d, path, i: {"text": d["text"], "id": f"{path}/{i}", "metadata": {"part": path}})
    tokenize = LocalPipelineExecutor([reader, ShardWriter(str(work / "shards"), str(work / "tokenizer"), tok.name)],
                                     tasks=len(prepared["parts"]), workers=workers, logging_dir=str(work / "logs" / "tokenize"))
    with datatrove_logs_to_files():
        tokenize.run()
    tokenize_seconds = time.perf_counter() - t1
    shards = [json.loads((work / "shards" / p).parent.parent.joinpath("tokens", tok.name, Path(p).name.replace(".parquet", ".json"))
                         .read_text())["sha256"] for p in prepared["parts"]]
    assert shards == prepared["shards"], "datatrove directly wrote other shards than llmexp"
    return {"seconds": clean_seconds + tokenize_seconds, "clean_seconds": clean_seconds, "tokenize_seconds": tokenize_seconds}


def bench_web(args) -> None:
    """Cleaning + MinHash + tokenize of synthetic web HTML: MB/s per core with 1 and 2 workers,
    and llmexp's cleaning against the same filters run by datatrove directly. The two alternate
    which goes first (per worker count and per round: a shared machine's speed drifts); with
    --rounds > 1 every figure is the median over rounds."""
    work = Path(args.dir or tempfile.mkdtemp(prefix="llmexp-bench-web-"))
    corpus = work / "web"
    if not corpus.is_dir():
        n = make_web_corpus(corpus, args.mb)
        print(f"web corpus: {n:,} pages, {args.mb} MB ({corpus})", flush=True)
    html_mb = sum(p.stat().st_size for p in corpus.glob("*.jsonl")) / MB
    result = {"html_mb": round(html_mb, 1), "tasks": args.tasks, "shard_mb": args.shard_mb, "rounds": args.rounds}
    timings: dict[str, list[float]] = {}
    prepared = None  # llmexp's split parts and shards: what the direct run tokenizes and must equal
    for round_ in range(args.rounds):
        for workers in (1, 2):
            order = ("llmexp", "direct") if prepared is None or (round_ + workers) % 2 else ("direct", "llmexp")
            for kind in order:
                out = work / f"{kind}-{workers}"
                shutil.rmtree(out, ignore_errors=True)
                extra = [json.dumps(prepared)] if kind == "direct" else []
                child = subprocess.run([sys.executable, __file__, f"--web-{kind}-child", str(corpus), str(out), str(workers),
                                        str(args.tasks), *extra, "--shard-mb", str(args.shard_mb)], capture_output=True, text=True)
                if child.returncode:
                    sys.exit(child.stderr[-3000:])
                r = json.loads(child.stdout.strip().splitlines()[-1])
                for key in ("seconds", "clean_seconds", "tokenize_seconds"):
                    timings.setdefault(f"{kind}_{workers}w_{key}", []).append(r[key])
                if kind == "llmexp":
                    prepared = prepared or {k: r[k] for k in ("parts", "shards", "data_root")}
                    assert r["shards"] == prepared["shards"], "llmexp wrote other shards than in its first run"
                    result["tokens"], result["shards"], result["clean_report"] = r["tokens"], len(r["shards"]), r["clean_report"]
            print(f"round {round_ + 1}, {workers} worker(s), {' then '.join(order)}: "
                  + ", ".join(f"{k} {timings[f'{k}_{workers}w_seconds'][-1]:.1f} s" for k in order), flush=True)
    for key, values in timings.items():
        result[key] = round(statistics.median(values), 1)
    for w in (1, 2):
        result[f"llmexp_{w}w_mb_per_s_per_core"] = round(html_mb / result[f"llmexp_{w}w_seconds"] / w, 3)
    result["scaling_2w_over_1w"] = round(result["llmexp_1w_seconds"] / result["llmexp_2w_seconds"], 3)
    for w in (1, 2):  # llmexp's stages (with reports, the split into parts, resume checks) against bare datatrove
        for stage in ("clean_", "tokenize_", ""):
            result[f"llmexp_{stage}vs_direct_{w}w"] = round(result[f"direct_{w}w_{stage}seconds"] / result[f"llmexp_{w}w_{stage}seconds"], 3)
    print(json.dumps(result, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=200, help="corpus size in MB")
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--tokenizer", default="cl100k_base")
    parser.add_argument("--bpe-mb", type=int, default=0, help="also time BPE training (32k vocab) on this many MB")
    parser.add_argument("--dir", default=None, help="work folder (default: a temporary one)")
    parser.add_argument("--child", nargs=2, metavar=("CORPUS", "CACHE"), help=argparse.SUPPRESS)
    parser.add_argument("--raw-child", metavar="CORPUS", help=argparse.SUPPRESS)
    parser.add_argument("--web", action="store_true", help="web HTML: cleaning + MinHash + tokenize on datatrove, 1 and 2 workers")
    parser.add_argument("--tasks", type=int, default=4, help="--web: datatrove tasks per cleaning stage")
    parser.add_argument("--shard-mb", type=float, default=32, help="--web: text MB per part (one tokenization task each)")
    parser.add_argument("--rounds", type=int, default=1, help="--web: alternating rounds; figures are medians")
    parser.add_argument("--web-llmexp-child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--web-direct-child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.web_llmexp_child or args.web_direct_child:
        corpus, out, workers, tasks, *prepared = args.web_llmexp_child or args.web_direct_child
        run = run_web_prepare if args.web_llmexp_child else run_web_direct
        print(json.dumps(run(Path(corpus), Path(out), int(workers), int(tasks), args.shard_mb, *map(json.loads, prepared))))
        return
    if args.web:
        bench_web(args)
        return
    if args.raw_child:
        print(json.dumps(raw_tiktoken(jsonl_batches(Path(args.raw_child)), args.procs, args.tokenizer)))
        return
    if args.child:
        print(json.dumps(run_prepare(Path(args.child[0]), Path(args.child[1]), args.procs, args.tokenizer)))
        return

    work = Path(args.dir or tempfile.mkdtemp(prefix="llmexp-bench-"))
    corpus, cache = work / "corpus", work / "cache"
    t = time.perf_counter()
    if not corpus.is_dir():
        n = make_corpus(corpus, args.mb)
        print(f"corpus: {n:,} documents, {args.mb} MB in {time.perf_counter() - t:.0f} s ({corpus})", flush=True)
    # Raw tiktoken before and after llmexp, on the same documents: a shared machine's load drifts.
    # In a child process, so that this one stays small: a forked child's peak RSS starts at its parent's.
    raw = subprocess.run([sys.executable, __file__, "--procs", str(args.procs), "--tokenizer", args.tokenizer,
                          "--raw-child", str(corpus)], capture_output=True, text=True)
    if raw.returncode:
        sys.exit(raw.stderr)
    before_seconds, before_tokens, before_cpu = json.loads(raw.stdout.strip().splitlines()[-1])
    child = subprocess.run([sys.executable, __file__, "--procs", str(args.procs), "--tokenizer", args.tokenizer,
                            "--child", str(corpus), str(cache)], capture_output=True, text=True)
    if child.returncode:
        sys.exit(child.stderr)
    ours = json.loads(child.stdout.strip().splitlines()[-1])
    after_seconds, raw_tokens, after_cpu = raw_tiktoken(part_batches(ours["parts"]), args.procs, args.tokenizer)
    assert raw_tokens == before_tokens == ours["tokens"] - ours["docs"], (raw_tokens, before_tokens, ours["tokens"])  # same text
    ours_rate = ours["tokens"] / ours["tokenize_seconds"]
    raw_rate = 2 * raw_tokens / (before_seconds + after_seconds)
    result = {
        "corpus_mb": ours["text_bytes"] / MB, "tokens": ours["tokens"], "procs": args.procs,
        "tokenize_and_shard_tokens_per_s": round(ours_rate), "raw_tiktoken_tokens_per_s": round(raw_rate),
        "ratio": round(ours_rate / raw_rate, 3),
        # Tokens per CPU-second: insensitive to other users' load on a shared machine.
        "cpu_ratio": round((ours["tokens"] / ours["tokenize_cpu_seconds"]) / (2 * raw_tokens / (before_cpu + after_cpu)), 3)
        if args.procs == 1 else None,
        "raw_before_tokens_per_s": round(raw_tokens / before_seconds), "raw_after_tokens_per_s": round(raw_tokens / after_seconds),
        "end_to_end_tokens_per_s": round(ours["tokens"] / (ours["clean_seconds"] + ours["tokenize_seconds"])),
        "clean_seconds": round(ours["clean_seconds"], 1), "tokenize_seconds": round(ours["tokenize_seconds"], 1),
        "peak_rss_main_mb": round(ours["peak_rss_main_mb"]), "peak_rss_worker_mb": round(ours["peak_rss_worker_mb"]),
    }
    if args.bpe_mb:
        result.update(bench_bpe(corpus, args.bpe_mb))
    print(json.dumps(result, indent=2))
    print(f"tokenize+shard: {ours_rate:,.0f} tokens/s vs raw tiktoken {raw_rate:,.0f} tokens/s "
          f"({args.procs} procs): ratio {ours_rate / raw_rate:.2f} (per CPU-second: {result['cpu_ratio']}); peak RSS {result['peak_rss_main_mb']} MB main, "
          f"{result['peak_rss_worker_mb']} MB per worker (max)")


if __name__ == "__main__":
    main()
