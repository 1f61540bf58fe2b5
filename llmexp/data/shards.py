"""Cleaned text parts and token shards on disk: written atomically, indexed, checksummed.

A source's cache folder (content-addressed, see prepare.py) holds
    clean/{train,val}-NNNNN.parquet   cleaned documents, one `text` column, ~shard_bytes each
    clean/report.json                 written last: parts, counts, content hashes, cleaning report
    tokens/<tokenizer>/{train,val}-NNNNN.bin   raw token ids (uint16 or uint32), end-of-text after
                                      every document; each with a .json sidecar (tokens,
                                      documents, text bytes, sha256) written after it
    tokens/<tokenizer>/index.json     written last: every shard of both splits, in order
Each Parquet part becomes one shard in one datatrove task (engine.MixTokenization), so workers
never share a file and an interrupted preparation keeps the shards it finished (a shard exists
only once complete: temporary file, fsync, rename).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
from pathlib import Path
from typing import Iterable, Iterator, List, Optional

import numpy as np

from llmexp.data.sources import DataError
from llmexp.data.tokens import token_dtype
from llmexp.io import atomic_write_text

ROW_GROUP_CHARS = 4_000_000  # text per Parquet row group: what a worker holds at a time
INDEX_FORMAT = 1


def _finish(tmp: Path, path: Path) -> None:
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


class PartWriter:
    """Documents of one split -> clean/<split>-NNNNN.parquet, a new part every ~shard_bytes."""

    def __init__(self, folder: Path, split: str, shard_bytes: int):
        self.folder, self.split, self.shard_bytes = folder, split, shard_bytes
        self.parts: List[str] = []
        self.buffer: List[str] = []
        self.buffer_chars = self.part_chars = 0
        self.writer = None
        self.hash = hashlib.sha256()  # content hash of the split's documents, in order
        self.docs = 0

    def __call__(self, doc: str) -> None:
        data = doc.encode("utf-8")
        self.hash.update(len(data).to_bytes(8, "little"))
        self.hash.update(data)
        self.docs += 1
        self.buffer.append(doc)
        self.buffer_chars += len(doc)
        if self.buffer_chars >= ROW_GROUP_CHARS:
            self._flush()
        if self.part_chars + self.buffer_chars >= self.shard_bytes:
            self._close_part()

    def _flush(self) -> None:
        if not self.buffer:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({"text": pa.array(self.buffer, type=pa.large_string())})
        if self.writer is None:
            name = f"{self.split}-{len(self.parts):05d}.parquet"
            self.tmp = self.folder / f".{name}.{os.getpid()}.tmp"  # concurrent preparers never share one
            self.writer = pq.ParquetWriter(self.tmp, table.schema, compression="zstd")
            self.parts.append(name)
        self.writer.write_table(table)
        self.part_chars += self.buffer_chars
        self.buffer, self.buffer_chars = [], 0

    def _close_part(self) -> None:
        self._flush()
        if self.writer is not None:
            self.writer.close()
            _finish(self.tmp, self.folder / self.parts[-1])
            self.writer, self.part_chars = None, 0

    def close(self) -> dict:
        self._close_part()
        return {"parts": self.parts, "docs": self.docs, "content_hash": self.hash.hexdigest()[:16]}


def iter_part_batches(path: Path, batch_rows: int = 256):
    """Record batches of a cleaned part (one `text` column)."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        yield from pf.iter_batches(batch_size=batch_rows, columns=["text"])
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: cleaned text is unreadable ({err}): delete its cache folder and prepare again") from None


def iter_part_texts(path: Path, batch_rows: int = 256) -> Iterator[List[str]]:
    for batch in iter_part_batches(path, batch_rows):
        yield batch.column(0).to_pylist()


# ---------------------------------------------------------------- tokenization (a datatrove task's side)

def shard_path(part: Path, tokenizer_name: str) -> Path:
    """clean/<split>-NNNNN.parquet -> tokens/<tokenizer>/<split>-NNNNN.bin of the same source."""
    return part.parent.parent / "tokens" / tokenizer_name / part.name.replace(".parquet", ".bin")


def write_shard(batches: Iterable[List[str]], shard: Path, tok) -> dict:
    """The documents of one part, in batches -> one token shard (each document followed by end-of-text) plus
    its sidecar, both written atomically; returns the sidecar."""
    encode, eot = tok.encoding.encode_ordinary, [tok.eot_id]
    dtype = token_dtype(tok.n_vocab)
    digest = hashlib.sha256()
    n_tokens = n_docs = n_bytes = 0
    tmp = shard.with_name(f".{shard.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        for batch in batches:
            ids = [encode(t) for t in batch]
            count = sum(map(len, ids)) + len(ids)
            # one flat array per batch: documents, each followed by end-of-text
            arr = np.fromiter(itertools.chain.from_iterable(itertools.chain.from_iterable(zip(ids, itertools.repeat(eot)))),
                              dtype=dtype, count=count)
            f.write(arr.data)
            digest.update(arr.data)
            n_tokens += count
            n_docs += len(batch)
            n_bytes += sum(len(t.encode("utf-8")) for t in batch)
    _finish(tmp, shard)
    meta = {"file": shard.name, "tokens": n_tokens, "docs": n_docs, "text_bytes": n_bytes,
            "sha256": digest.hexdigest(), "nbytes": n_tokens * dtype.itemsize}
    atomic_write_text(shard.with_suffix(".json"), json.dumps(meta))
    return meta


def shard_done(shard: Path) -> Optional[dict]:
    """The sidecar of a complete shard, or None (missing, or its size disagrees)."""
    sidecar = shard.with_suffix(".json")
    if not (shard.is_file() and sidecar.is_file()):
        return None
    meta = json.loads(sidecar.read_text())
    return meta if shard.stat().st_size == meta["nbytes"] else None


# ---------------------------------------------------------------- reading and verifying

def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def bad_shards(folder: Path, index: dict, full: bool) -> List[str]:
    """Shards of `index` that are missing, of the wrong size, or (full=True) whose sha256 differs."""
    bad = []
    for split in ("train", "val"):
        for meta in index["splits"][split]:
            path = folder / meta["file"]
            if not path.is_file() or path.stat().st_size != meta["nbytes"]:
                bad.append(meta["file"])
            elif full and sha256_file(path) != meta["sha256"]:
                bad.append(meta["file"])
    return bad


def open_shard(path: Path, dtype: np.dtype, n_tokens: int) -> np.ndarray:
    """Memory-mapped token ids; a size that disagrees with the index is an error, never a short read."""
    size = path.stat().st_size if path.is_file() else -1
    if size != n_tokens * dtype.itemsize:
        raise DataError(
            f"{path}: shard is truncated or corrupt ({size} bytes, index says {n_tokens * dtype.itemsize}): "
            "run `llmexp prepare` with the same overrides to rebuild it"
        )
    if n_tokens == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=(n_tokens,))
