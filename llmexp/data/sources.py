"""Documents from each configured source, in a deterministic order."""
from __future__ import annotations

import glob
import hashlib
import json
import os
from pathlib import Path
from typing import Iterator, List

from llmexp.config.schema import SourceConfig


class DataError(ValueError):
    """Bad data input: names the source and what is wrong with it."""


def embedded_documents() -> List[str]:
    """Python's reference documentation (pydoc_data.topics): English prose that every
    CPython installation carries, one document per topic."""
    from pydoc_data.topics import topics

    return [topics[name] for name in sorted(topics)]


def _files(pattern: str) -> List[Path]:
    path = Path(os.path.expanduser(pattern))
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    if path.is_file():
        return [path]
    return sorted(Path(p) for p in glob.glob(os.path.expanduser(pattern), recursive=True) if os.path.isfile(p))


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason})") from None


def _jsonl_documents(path: Path, field: str) -> Iterator[str]:
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{lineno}: invalid JSON ({err.msg})") from None
            if field not in record:
                raise DataError(f"{path}:{lineno}: no field {field!r} (fields: {', '.join(sorted(record))})")
            yield str(record[field])


def source_documents(source: SourceConfig) -> List[str]:
    if source.kind == "embedded":
        return embedded_documents()
    files = _files(source.path)
    if not files:
        raise DataError(f"data source {source.path!r}: no files found")
    if source.kind == "text":
        docs = [_read_text(p) for p in files]
    else:
        docs = [doc for p in files for doc in _jsonl_documents(p, source.text_field)]
    docs = [d for d in docs if d.strip()]
    if not docs:
        raise DataError(f"data source {source.path!r}: every document is empty")
    return docs


def fingerprint(documents: List[str]) -> str:
    """Content hash of the documents, in order: the identity of the data for caches and runs."""
    h = hashlib.sha256()
    for doc in documents:
        data = doc.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:16]
