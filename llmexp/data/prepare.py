"""Data preparation: sources -> cleaned parts -> tokenizer -> token shards, cached by content.

Cache keys (under $LLMEXP_CACHE/data/):
    source key = hash(source fingerprint, its cleaning config, split settings, shard size)
    shards     = <source key>/tokens/<tokenizer name>   (a trained BPE's name carries its own hash)
so a change of input files, cleaning, split or tokenizer prepares anew, and anything else reuses
what is there. A run that finds every index ready reads nothing but the indexes and starts.
`llmexp prepare` (llmexp/data/cli.py) runs this same function once for many runs.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import numpy as np

from llmexp.config.schema import Config, DataConfig, SourceConfig
from llmexp.data.clean import Cleaner, format_report
from llmexp.data.shards import (
    INDEX_FORMAT, PartWriter, bad_shards, iter_part_texts, open_shard, run_tasks, shard_done,
)
from llmexp.data.sources import DataError, iter_documents, source_fingerprint, source_name
from llmexp.data.split import StreamSplit
from llmexp.data.tokens import entropy_of_counts, token_dtype
from llmexp.io import atomic_write_text, cache_root
from llmexp.tokenizers import Tokenizer, load_tokenizer

CLEAN_FORMAT = 1
ENTROPY_MAX_TOKENS = 20_000_000  # the validation baseline reads at most this many tokens


def _log(message: str) -> None:
    print(message, flush=True)


def source_key(source: SourceConfig, data: DataConfig) -> str:
    spec = {"source": source_fingerprint(source), "clean": asdict(source.clean), "val_fraction": data.val_fraction,
            "split_seed": data.split_seed, "shard_bytes": data.shard_bytes, "format": CLEAN_FORMAT}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class SourceData:
    """One prepared source: its cleaned parts, and (after tokenization) its shards."""

    name: str
    weight: float  # normalised over the mix
    folder: Path
    clean: dict  # clean/report.json
    token_dir: Optional[Path] = None
    index: Optional[dict] = None  # tokens/<tokenizer>/index.json

    def shards(self, split: str) -> List[tuple[Path, int]]:
        return [(self.token_dir / m["file"], m["tokens"]) for m in self.index["splits"][split]]

    def tokens(self, split: str) -> int:
        return sum(m["tokens"] for m in self.index["splits"][split])

    @property
    def bytes_per_token(self) -> float:
        """UTF-8 bytes of training text per token (end-of-text tokens not counted)."""
        metas = self.index["splits"]["train"]
        text_tokens = sum(m["tokens"] - m["docs"] for m in metas)
        return sum(m["text_bytes"] for m in metas) / max(1, text_tokens)

    def summary(self) -> dict:
        return {
            "name": self.name, "weight": self.weight, "cache": str(self.folder),
            "docs": {"train": self.clean["train"]["docs"], "val": self.clean["val"]["docs"]},
            "tokens": {"train": self.tokens("train"), "val": self.tokens("val")},
            "bytes_per_token": round(self.bytes_per_token, 4),
            "shards": len(self.index["splits"]["train"]) + len(self.index["splits"]["val"]),
            "cleaning": self.clean["steps"],
        }


@dataclass
class PreparedData:
    tokenizer: Tokenizer
    sources: List[SourceData]
    fingerprint: str  # of the cleaned documents of every source, with the weights
    dtype: np.dtype = field(init=False)

    def __post_init__(self) -> None:
        self.dtype = token_dtype(self.tokenizer.n_vocab)

    @property
    def n_train_docs(self) -> int:
        return sum(s.clean["train"]["docs"] for s in self.sources)

    @property
    def n_val_docs(self) -> int:
        return sum(s.clean["val"]["docs"] for s in self.sources)

    def shards(self, split: str) -> List[List[tuple[Path, int]]]:
        return [s.shards(split) for s in self.sources]

    def tokens(self, split: str) -> np.ndarray:
        """Every token of a split, in memory: for small data (benchmarks, tests)."""
        arrays = [open_shard(p, self.dtype, n) for shards in self.shards(split) for p, n in shards]
        return np.concatenate(arrays) if arrays else np.zeros(0, dtype=self.dtype)

    @property
    def train(self) -> np.ndarray:
        return self.tokens("train")

    @property
    def val(self) -> np.ndarray:
        return self.tokens("val")

    @cached_property
    def val_unigram_entropy(self) -> float:
        """Unigram entropy of the validation text (all sources), over at most 20M tokens."""
        counts = np.zeros(self.tokenizer.n_vocab, dtype=np.int64)
        budget = ENTROPY_MAX_TOKENS
        for shards in self.shards("val"):
            for path, n in shards:
                take = min(n, budget)
                if take:
                    counts += np.bincount(np.asarray(open_shard(path, self.dtype, n)[:take], dtype=np.int64),
                                          minlength=len(counts))[: len(counts)]
                    budget -= take
        if counts.sum() == 0:
            return float("nan")
        return entropy_of_counts(counts)

    def summary(self) -> dict:
        return {"fingerprint": self.fingerprint, "tokenizer": self.tokenizer.name,
                "dtype": self.dtype.name, "sources": [s.summary() for s in self.sources]}

    def describe(self) -> str:
        lines = [
            f"data: {self.n_train_docs:,} train / {self.n_val_docs:,} validation documents, "
            f"{sum(s.tokens('train') for s in self.sources):,} / {sum(s.tokens('val') for s in self.sources):,} "
            f"tokens (fingerprint {self.fingerprint}); unigram entropy of the validation text: "
            f"{self.val_unigram_entropy:.3f} nats/token"
        ]
        for s in self.sources:
            lines.append(
                f"  {s.name}: weight {s.weight:.3f}, {s.tokens('train'):,} train / {s.tokens('val'):,} val tokens, "
                f"{s.bytes_per_token:.2f} bytes/token under {self.tokenizer.name}, {s.token_dir}"
            )
        return "\n".join(lines)


# ---------------------------------------------------------------- stage 1: read, clean, split

def clean_source(source: SourceConfig, data: DataConfig, root: Path, log: Callable[[str], None]) -> tuple[Path, dict]:
    """The source's cleaned train/val parts, from the cache or made now."""
    folder = root / f"{source_name(source)}-{source_key(source, data)}"
    report_path = folder / "clean" / "report.json"
    if report_path.is_file():
        return folder, json.loads(report_path.read_text())
    name = source_name(source)
    clean_dir = folder / "clean"
    if clean_dir.exists():  # an interrupted cleaning: dedup state is gone, start the source over
        shutil.rmtree(clean_dir)
    clean_dir.mkdir(parents=True)
    started = time.perf_counter()
    train, val = PartWriter(clean_dir, "train", data.shard_bytes), PartWriter(clean_dir, "val", data.shard_bytes)
    splitter = StreamSplit(data.val_fraction, data.split_seed, train, val)
    cleaner = Cleaner(source.clean)
    for doc in cleaner(iter_documents(source)):
        splitter(doc)
    n_train, n_val = splitter.finish()
    steps = cleaner.report_dicts()
    if steps[0]["docs_in"] == 0:
        raise DataError(f"data source {name!r}: no documents ({source.path or source.dataset or source.kind})")
    if n_train + n_val == 0:
        raise DataError(f"data source {name!r}: cleaning removed every one of {steps[0]['docs_in']:,} documents "
                        "(" + ", ".join(f"{r['step']} {r['docs_in']}->{r['docs_out']}" for r in steps[1:]) + ")")
    report = {"source": name, "train": train.close(), "val": val.close(), "steps": steps,
              "seconds": round(time.perf_counter() - started, 2)}
    atomic_write_text(report_path, json.dumps(report, indent=2))
    log(format_report(name, steps))
    return folder, report


def training_texts(sources: List[SourceData], max_bytes: int) -> Iterator[str]:
    """BPE training text: each source's training documents up to its weight's share of max_bytes."""
    for s in sources:
        quota = s.weight * max_bytes
        for part in s.clean["train"]["parts"]:
            for texts in iter_part_texts(s.folder / "clean" / part):
                for text in texts:
                    if quota <= 0:
                        break
                    quota -= len(text.encode("utf-8"))
                    yield text
            if quota <= 0:
                break


# ---------------------------------------------------------------- stage 2: tokenize to shards

def tokenize_source(s: SourceData, tokenizer: Tokenizer, data: DataConfig, log: Callable[[str], None],
                    verify: bool = False) -> None:
    token_dir = s.folder / "tokens" / tokenizer.name
    index_path = token_dir / "index.json"
    s.token_dir = token_dir
    if index_path.is_file():
        index = json.loads(index_path.read_text())
        bad = bad_shards(token_dir, index, full=verify or data.verify_checksums)
        if not bad:
            s.index = index
            return
        log(f"  {s.name}: {len(bad)} shard(s) truncated or corrupt ({', '.join(bad[:3])}): rebuilding them")
        for name in bad:
            (token_dir / name).unlink(missing_ok=True)
            (token_dir / name).with_suffix(".json").unlink(missing_ok=True)
        index_path.unlink()
    token_dir.mkdir(parents=True, exist_ok=True)
    if not (token_dir / "tokenizer" / "tokenizer.json").is_file():
        tokenizer.save(token_dir / "tokenizer")  # what the worker processes load
    tasks, metas = [], {}
    for split in ("train", "val"):
        for part in s.clean[split]["parts"]:
            shard = token_dir / part.replace(".parquet", ".bin")
            done = shard_done(shard)
            if done is not None:
                metas[shard.name] = done  # finished before an interruption: kept
            else:
                tasks.append((str(s.folder / "clean" / part), str(shard), str(token_dir / "tokenizer")))
    if tasks:
        started, total = time.perf_counter(), [0]

        def done(meta: dict) -> None:
            metas[meta["file"]] = meta
            total[0] += meta["tokens"]

        procs = run_tasks(tasks, data.num_proc, done)
        seconds = time.perf_counter() - started
        log(f"  {s.name}: tokenized {len(tasks)} shard(s), {total[0]:,} tokens in {seconds:.1f} s "
            f"({total[0] / max(seconds, 1e-9):,.0f} tokens/s, {procs} process(es))")
    index = {
        "format": INDEX_FORMAT, "tokenizer": tokenizer.name, "n_vocab": tokenizer.n_vocab, "eot": tokenizer.eot_id,
        "dtype": token_dtype(tokenizer.n_vocab).name,
        "splits": {split: [metas[p.replace(".parquet", ".bin")] for p in s.clean[split]["parts"]] for split in ("train", "val")},
    }
    atomic_write_text(index_path, json.dumps(index, indent=1))
    s.index = index


def prepare_data(cfg: Config, verify: bool = False, log: Callable[[str], None] = _log) -> PreparedData:
    """Every source cleaned and tokenized (or found in the cache), and the tokenizer."""
    data = cfg.data
    root = cache_root(data.cache_dir) / "data"
    total_weight = sum(s.weight for s in data.sources)
    sources = []
    for source in data.sources:
        folder, report = clean_source(source, data, root, log)
        sources.append(SourceData(source_name(source), source.weight / total_weight, folder, report))
    # The tokenizer learns from training documents only, so validation stays held out.
    train_id = json.dumps([(s.name, s.weight, s.clean["train"]["content_hash"]) for s in sources])
    tokenizer = load_tokenizer(cfg.tokenizer, hashlib.sha256(train_id.encode()).hexdigest()[:16],
                               lambda: training_texts(sources, cfg.tokenizer.train_max_bytes))
    for s in sources:
        tokenize_source(s, tokenizer, data, log, verify)
    all_id = json.dumps([(s.name, s.weight, s.clean["train"]["content_hash"], s.clean["val"]["content_hash"]) for s in sources])
    return PreparedData(tokenizer, sources, hashlib.sha256(all_id.encode()).hexdigest()[:16])
