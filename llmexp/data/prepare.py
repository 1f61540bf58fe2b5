"""Data preparation: sources -> cleaned parts -> tokenizer -> token shards, cached by content.

Cache keys (under $LLMEXP_CACHE/data/):
    source key = hash(source fingerprint, its cleaning config, split settings, shard size,
                      on_bad_record; with data.minhash_dedup, every source of the mix)
    shards     = <source key>/tokens/<tokenizer name>   (a trained BPE's name carries its own hash)
so a change of input files, cleaning, split or tokenizer prepares anew, and anything else reuses
what is there. A run that finds every index ready reads nothing but the indexes and starts.
`llmexp prepare` (llmexp/data/cli.py) runs this same function once for many runs. Cleaning and
tokenization both run on HF datatrove (engine.py): clean/dedup -> (here) split into parts and
train the tokenizer -> tokenize, one task per part, into llmexp's checksummed shards (shards.py).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import numpy as np

from llmexp.artifacts import saved_config
from llmexp.config.schema import Config, DataConfig, SourceConfig
from llmexp.data.clean import format_report
from llmexp.data.engine import MixCleaning, MixTokenization
from llmexp.data.shards import (
    INDEX_FORMAT, PartWriter, bad_shards, iter_part_texts, open_shard, shard_done, shard_path,
)
from llmexp.data.sources import DataError, source_fingerprint, source_name
from llmexp.data.split import StreamSplit
from llmexp.data.tokens import entropy_of_counts, token_dtype, windows
from llmexp.io import atomic_write_text, cache_root, exclusive
from llmexp.tokenizers import Tokenizer, load_tokenizer
from llmexp.tokenizers.saved import init_tokenizer

CLEAN_FORMAT = 2  # 2: datatrove engine, reports with removed samples and bad records
ENTROPY_MAX_TOKENS = 20_000_000  # the validation baseline reads at most this many tokens


def _log(message: str) -> None:
    print(message, flush=True)


def source_keys(sources: List[SourceConfig], data: DataConfig) -> List[str]:
    """Cache key of each source's cleaned parts. With MinHash across the mix a source's result
    depends on every other source, so each key then covers the whole mix."""
    specs = [{"source": source_fingerprint(s), "clean": asdict(s.clean)} for s in sources]
    common = {"val_fraction": data.val_fraction, "split_seed": data.split_seed, "shard_bytes": data.shard_bytes,
              "on_bad_record": data.on_bad_record, "format": CLEAN_FORMAT}
    if data.minhash_dedup:
        common["mix"] = {"sources": specs, "ngram": data.minhash_ngram, "buckets": data.minhash_buckets,
                         "hashes_per_bucket": data.minhash_hashes_per_bucket}
    return [hashlib.sha256(json.dumps({**spec, **common}, sort_keys=True, default=str).encode()).hexdigest()[:16]
            for spec in specs]


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

def remove_stale_temp_files(folder: Path, log: Callable[[str], None]) -> None:
    """Temporary files (`.<name>.<pid>.tmp`) left by a killed prepare: removed unless their
    process still runs (concurrent preparers never share one)."""
    stale = []
    for tmp in folder.glob(".*.tmp"):
        pid = tmp.name.rsplit(".", 2)[-2]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)
            stale.append(tmp.name)
    if stale:
        log(f"  removed {len(stale)} temporary file(s) of an interrupted prepare in {folder}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def split_by_bytes(text: str, val_fraction: float) -> tuple[str, str]:
    """One document -> (train, validation): the last val_fraction of its bytes, cut at the line
    (else word) boundary nearest to that point, so neither side starts mid-word."""
    cut = int(len(text) * (1 - val_fraction))
    candidates = [i for i in (text.rfind("\n", 0, cut), text.find("\n", cut), text.rfind(" ", 0, cut)) if 0 < i < len(text) - 1]
    if candidates:
        cut = min(candidates, key=lambda i: abs(i - cut))
    return text[:cut], text[cut:].lstrip("\n")


def write_parts(docs: Iterator[str], name: str, folder: Path, data: DataConfig, log: Callable[[str], None]) -> tuple[dict, dict]:
    """Kept documents -> clean/{train,val}-NNNNN.parquet by the document-level split; a source of
    one document is split by bytes instead."""
    clean_dir = folder / "clean"
    if clean_dir.exists():  # parts of an interrupted split: the cleaned documents are still in the work folder
        shutil.rmtree(clean_dir)
    clean_dir.mkdir(parents=True)
    train, val = PartWriter(clean_dir, "train", data.shard_bytes), PartWriter(clean_dir, "val", data.shard_bytes)
    first = list(itertools.islice(docs, 2))
    if len(first) == 1:
        head, tail = split_by_bytes(first[0], data.val_fraction)
        train(head)
        val(tail)
        log(f"  {name}: one document: split by bytes, the last {len(tail.encode()):,} of {len(first[0].encode()):,} bytes "
            f"(val_fraction={data.val_fraction}) held out for validation")
    else:
        splitter = StreamSplit(data.val_fraction, data.split_seed, train, val)
        for doc in itertools.chain(first, docs):
            splitter(doc)
        splitter.finish()
    return train.close(), val.close()


def clean_sources(sources: List[SourceConfig], data: DataConfig, root: Path, log: Callable[[str], None]) -> List[tuple[Path, dict]]:
    """Each source's cleaned train/val parts, from the cache or made now by the datatrove engine."""
    keys = source_keys(sources, data)
    folders = [root / f"{source_name(s)}-{k}" for s, k in zip(sources, keys)]
    pending = [i for i, f in enumerate(folders) if not (f / "clean" / "report.json").is_file()]

    def work_of(indices: List[int]) -> Path:
        return root / ("work-" + hashlib.sha256("".join(keys[i] for i in indices).encode()).hexdigest()[:16])

    if pending:
        with exclusive(root / "locks" / (work_of(pending).name + ".lock")):  # another process may be cleaning the same sources
            pending = [i for i in pending if not (folders[i] / "clean" / "report.json").is_file()]
            _clean_pending(pending, sources, folders, data, work_of(pending), log)
    return [(f, json.loads((f / "clean" / "report.json").read_text())) for f in folders]


def _clean_pending(pending: List[int], sources: List[SourceConfig], folders: List[Path], data: DataConfig, work: Path,
                   log: Callable[[str], None]) -> None:
    if not pending:
        return
    cleaning = MixCleaning([sources[i] for i in pending], data, work)
    started = time.perf_counter()
    cleaning.run(log)
    for i in pending:
        source, name = sources[i], source_name(sources[i])
        steps = cleaning.steps(source, name)
        if steps[0]["docs_out"] == 0:
            raise DataError(f"data source {name!r}: no documents ({source.path or source.dataset or source.kind})"
                            + (f"; {steps[0]['bad_records']:,} bad record(s) skipped, first: {steps[0]['bad_examples'][0]}"
                               if steps[0].get("bad_records") else ""))
        kept = steps[-1]["docs_out"]
        if kept == 0:
            raise DataError(f"data source {name!r}: cleaning removed every one of {steps[0]['docs_out']:,} documents "
                            "(" + ", ".join(f"{r['step']} {r['docs_in']}->{r['docs_out']}" for r in steps[1:]) + ")")
        train, val = write_parts(cleaning.documents(name), name, folders[i], data, log)
        report = {"source": name, "train": train, "val": val, "steps": steps,
                  "seconds": round(time.perf_counter() - started, 2)}
        atomic_write_text(folders[i] / "clean" / "report.json", json.dumps(report, indent=2))
        log(format_report(name, steps))
    cleaning.remove()


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

def cached_index(s: SourceData, tokenizer: Tokenizer, data: DataConfig, log: Callable[[str], None], verify: bool) -> bool:
    """Point `s` at its shards under `tokenizer`; True when their index is there and its shards
    are whole (a truncated or corrupt shard is deleted, with the index, to be tokenized again)."""
    s.token_dir = s.folder / "tokens" / tokenizer.name
    index_path = s.token_dir / "index.json"
    if not index_path.is_file():
        return False
    index = json.loads(index_path.read_text())
    bad = bad_shards(s.token_dir, index, full=verify or data.verify_checksums)
    if not bad:
        s.index = index
        return True
    log(f"  {s.name}: {len(bad)} shard(s) truncated or corrupt ({', '.join(bad[:3])}): rebuilding them")
    for name in bad:
        (s.token_dir / name).unlink(missing_ok=True)
        (s.token_dir / name).with_suffix(".json").unlink(missing_ok=True)
    index_path.unlink()
    return False


def tokenize_sources(sources: List[SourceData], tokenizer: Tokenizer, data: DataConfig, root: Path,
                     log: Callable[[str], None], verify: bool = False) -> None:
    """Every source's shards and index under `tokenizer`: from the cache, or made now by one
    datatrove stage over the parts of every source that lacks them (engine.MixTokenization)."""
    pending = [s for s in sources if not cached_index(s, tokenizer, data, log, verify)]
    if not pending:
        return
    lock = hashlib.sha256(json.dumps([tokenizer.name, [s.folder.name for s in pending]]).encode()).hexdigest()[:16]
    with exclusive(root / "locks" / f"tokenize-{lock}.lock"):  # another process may be tokenizing the same sources
        pending = [s for s in pending if not cached_index(s, tokenizer, data, log, verify)]
        if pending:
            _tokenize_pending(pending, tokenizer, data, root, log)


def _tokenize_pending(pending: List[SourceData], tokenizer: Tokenizer, data: DataConfig, root: Path,
                      log: Callable[[str], None]) -> None:
    parts = [f"{s.folder.name}/clean/{p}" for s in pending for split in ("train", "val") for p in s.clean[split]["parts"]]
    for s in pending:
        s.token_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(s.token_dir, log)
    key = hashlib.sha256(json.dumps([tokenizer.name, parts]).encode()).hexdigest()[:16]
    tokenizing = MixTokenization(parts, root, tokenizer, data, root / f"tokenize-{key}")
    started = time.perf_counter()
    tokenizing.run(log)
    seconds = time.perf_counter() - started
    for s in pending:
        metas = {}
        for part in (p for split in ("train", "val") for p in s.clean[split]["parts"]):
            meta = shard_done(shard_path(s.folder / "clean" / part, tokenizer.name))
            if meta is None:
                raise DataError(f"{s.token_dir}: tokenization finished without the shard of {part}; "
                                f"task logs: {tokenizing.work / 'logs'}")
            metas[part] = meta
        s.index = {
            "format": INDEX_FORMAT, "tokenizer": tokenizer.name, "n_vocab": tokenizer.n_vocab, "eot": tokenizer.eot_id,
            "dtype": token_dtype(tokenizer.n_vocab).name,
            "splits": {split: [metas[p] for p in s.clean[split]["parts"]] for split in ("train", "val")},
        }
        atomic_write_text(s.token_dir / "index.json", json.dumps(s.index, indent=1))
        total = s.tokens("train") + s.tokens("val")
        log(f"  {s.name}: tokenized into {len(metas)} shard(s), {total:,} tokens ({seconds:.1f} s of tokenization for the mix)")
    tokenizing.remove()


def _check_validation_size(sources: List[SourceData], seq_len: int) -> None:
    """Validation reads whole windows of seq_len + 1 tokens: fail here, in one line, not in training."""
    n = sum(s.tokens("val") for s in sources)
    if windows(n, seq_len) == 0:
        raise DataError(f"validation text has {n:,} tokens, shorter than one sequence of {seq_len} (+1) tokens: "
                        "raise data.val_fraction, add data, or lower trainer.seq_len")


def prepare_data(cfg: Config, verify: bool = False, log: Callable[[str], None] = _log) -> PreparedData:
    """Every source cleaned and tokenized (or found in the cache), and the tokenizer."""
    data = cfg.data
    root = cache_root(data.cache_dir) / "data"
    total_weight = sum(s.weight for s in data.sources)
    sources = [SourceData(source_name(source), source.weight / total_weight, folder, report)
               for source, (folder, report) in zip(data.sources, clean_sources(data.sources, data, root, log))]
    # The tokenizer learns from training documents only, so validation stays held out.
    train_id = json.dumps([(s.name, s.weight, s.clean["train"]["content_hash"]) for s in sources])
    if cfg.init_from is not None and saved_config(cfg.init_from) is not None:
        # continued pretraining: the run's own ids (a BPE trained anew on this data would feed
        # the loaded embeddings other ids than they learned)
        tokenizer = init_tokenizer(cfg.init_from)
    else:
        tokenizer = load_tokenizer(cfg.tokenizer, hashlib.sha256(train_id.encode()).hexdigest()[:16],
                                   lambda: training_texts(sources, cfg.tokenizer.train_max_bytes))
    tokenize_sources(sources, tokenizer, data, root, log, verify)
    _check_validation_size(sources, cfg.trainer.seq_len or cfg.model.max_seq_len)
    all_id = json.dumps([(s.name, s.weight, s.clean["train"]["content_hash"], s.clean["val"]["content_hash"]) for s in sources])
    return PreparedData(tokenizer, sources, hashlib.sha256(all_id.encode()).hexdigest()[:16])
