"""Documents from each configured source, streamed in a deterministic order.

Every kind yields one string per document without holding the source in memory: text files
one at a time, JSONL line by line, Parquet by record batches, Hugging Face datasets through
their Arrow (memory-mapped) or streaming iterators. A source's *fingerprint* identifies its
input cheaply (file names, sizes and modification times; a hub name and revision), so a
prepared cache is found again without reading the data.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import string
from pathlib import Path
from typing import Any, Callable, Iterator, List, Mapping, Optional

from llmexp.config.schema import SourceConfig


class DataError(ValueError):
    """Bad data input: names the source and what is wrong with it."""


def source_name(source: SourceConfig) -> str:
    return source.name or source.kind


def embedded_documents() -> List[str]:
    """Python's reference documentation (pydoc_data.topics): English prose that every
    CPython installation carries, one document per topic."""
    from pydoc_data.topics import topics

    return [topics[name] for name in sorted(topics)]


def find_files(pattern: str, suffix: str = "") -> List[Path]:
    """A file, every file below a folder (ending in `suffix`, hidden ones skipped), or a glob."""
    path = Path(os.path.expanduser(pattern))
    if path.is_dir():
        return sorted(p for p in path.rglob(f"*{suffix}") if p.is_file() and not p.name.startswith("."))
    if path.is_file():
        return [path]
    return sorted(Path(p) for p in glob.glob(os.path.expanduser(pattern), recursive=True) if os.path.isfile(p))


def _source_files(source: SourceConfig) -> List[Path]:
    files = find_files(source.path)
    if not files:
        raise DataError(f"data source {source_name(source)!r}: no files match {source.path!r}")
    return files


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason})") from None


def record_text(source: SourceConfig, where: str) -> Callable[[Mapping[str, Any]], str]:
    """record -> document text: the text field, or the template filled from several fields."""
    if source.template is not None:
        fields = [f for _, f, _, _ in string.Formatter().parse(source.template) if f]

        def fill(record: Mapping[str, Any]) -> str:
            missing = [f for f in fields if f not in record]
            if missing:
                raise DataError(f"{where}: no field {missing[0]!r} for the template (fields: {', '.join(sorted(record))})")
            return source.template.format_map({f: "" if record[f] is None else record[f] for f in fields})

        return fill
    field = source.text_field

    def get(record: Mapping[str, Any]) -> str:
        if field not in record:
            raise DataError(f"{where}: no field {field!r} (fields: {', '.join(sorted(record))})")
        value = record[field]
        return "" if value is None else str(value)

    return get


def _raise_error(where: str, message: str) -> None:
    raise DataError(f"{where}: {message}")


def jsonl_records(path: Path, on_error: Callable[[str, str], None] = _raise_error) -> Iterator[tuple[str, dict]]:
    """(`file:line`, record) for each non-blank line of a JSON Lines file; bad bytes, bad JSON
    and non-object lines go to on_error(file:line, message): a DataError, unless the caller
    skips and counts them."""
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                on_error(where, f"not UTF-8 (byte {err.start}: {err.reason})")
                continue
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                on_error(where, f"invalid JSON ({err.msg})")
                continue
            if not isinstance(record, dict):
                on_error(where, f"expected a JSON object, got {type(record).__name__}")
                continue
            yield where, record


Record = tuple  # (where: "file:line" or similar, text, url or None)


def _fields(source: SourceConfig) -> List[str]:
    return [f for _, f, _, _ in string.Formatter().parse(source.template) if f] if source.template else [source.text_field]


def _text_or_error(where: str, get: Callable[[], str], on_error: Callable[[str, str], None]) -> Optional[str]:
    try:
        return get()
    except DataError as err:
        on_error(where, str(err).removeprefix(f"{where}: "))
        return None


def _jsonl_records(path: Path, source: SourceConfig, on_error) -> Iterator[Record]:
    url_field = source.clean.url_field
    for where, record in jsonl_records(path, on_error):
        text = _text_or_error(where, lambda: record_text(source, where)(record), on_error)
        if text is not None:
            yield where, text, record.get(url_field)


def _parquet_records(path: Path, source: SourceConfig, on_error) -> Iterator[Record]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises several types for a file that is not Parquet
        on_error(str(path), f"not a readable Parquet file ({err})")
        return
    columns = pf.schema_arrow.names
    wanted = _fields(source)
    missing = [c for c in wanted if c not in columns]
    if missing:
        on_error(str(path), f"no column {missing[0]!r} (columns: {', '.join(columns)})")
        return
    url_field = source.clean.url_field if source.clean.url_field in columns else None
    to_text = record_text(source, str(path))
    row = 0
    for batch in pf.iter_batches(batch_size=1024, columns=sorted(set(wanted) | ({url_field} if url_field else set()))):
        records = batch.to_pylist()
        texts = (("" if r[source.text_field] is None else r[source.text_field]) for r in records) if source.template is None \
            else (to_text(r) for r in records)
        for record, text in zip(records, texts):
            row += 1
            yield f"{path}:row {row}", text, record.get(url_field) if url_field else None


def _hf_dataset(source: SourceConfig):
    """A `datasets` Dataset (or IterableDataset): a save_to_disk folder, local data files with a
    builder (json, parquet, csv, text), or a hub dataset by name/subset/split (needs network)."""
    import datasets

    name = source_name(source)
    try:
        if source.path and source.dataset is None:
            loaded = datasets.load_from_disk(os.path.expanduser(source.path))
            if isinstance(loaded, datasets.DatasetDict):
                if source.split not in loaded:
                    raise DataError(f"data source {name!r}: no split {source.split!r} (splits: {', '.join(loaded)})")
                loaded = loaded[source.split]
            return loaded
        data_files = [str(p) for p in _source_files(source)] if source.path else None
        return datasets.load_dataset(
            source.dataset, source.subset, split=source.split, revision=source.revision,
            data_files=data_files, streaming=source.streaming,
        )
    except DataError:
        raise
    except Exception as err:  # hub/network/format errors: one line naming the source
        raise DataError(f"data source {name!r}: cannot load {source.dataset or source.path!r} ({type(err).__name__}: {err})") from None


def _hf_records(source: SourceConfig, rank: int, world_size: int, on_error) -> Iterator[Record]:
    dataset = _hf_dataset(source)
    columns = dataset.column_names or []
    wanted = _fields(source)
    missing = [c for c in wanted if columns and c not in columns]
    if missing:
        raise DataError(f"data source {source_name(source)!r}: no field {missing[0]!r} (fields: {', '.join(columns)})")
    if hasattr(dataset, "shard") and not source.streaming:
        dataset = dataset.shard(world_size, rank, contiguous=True)
    elif rank:
        return  # a streamed dataset is read by the first task
    name, url_field = source.dataset or source.path, source.clean.url_field
    to_text = record_text(source, f"data source {source_name(source)!r}")
    if hasattr(dataset, "iter") and not source.streaming:
        keep = wanted + ([url_field] if url_field in columns and url_field not in wanted else [])
        rows = (dict(zip(batch, values)) for batch in dataset.select_columns(keep).iter(batch_size=1024)
                for values in zip(*batch.values()))
    else:
        rows = iter(dataset)
    for i, record in enumerate(rows):
        where = f"{name}:{i}"
        text = _text_or_error(where, lambda: to_text(record), on_error)
        if text is not None:
            yield where, text, record.get(url_field)


def iter_records(source: SourceConfig, rank: int = 0, world_size: int = 1,
                 on_error: Callable[[str, str], None] = _raise_error) -> Iterator[Record]:
    """(where, text, url) of every document of `source` in a deterministic order (files sorted by
    path), or of task `rank`'s share of them: files rank, rank+world_size, ...; an hf dataset's
    contiguous shard; the embedded corpus and streamed datasets in task 0. A bad file or record
    goes to on_error(where, message): a DataError unless the caller skips and counts it."""
    if source.kind == "embedded":
        if rank == 0:
            yield from ((f"embedded:{i}", text, None) for i, text in enumerate(embedded_documents()))
    elif source.kind == "hf":
        yield from _hf_records(source, rank, world_size, on_error)
    elif source.kind in ("text", "jsonl", "parquet"):
        for path in _source_files(source)[rank::world_size]:
            if source.kind == "text":
                text = _text_or_error(str(path), lambda: _read_text(path), on_error)
                if text is not None:
                    yield str(path), text, None
            elif source.kind == "jsonl":
                yield from _jsonl_records(path, source, on_error)
            else:
                yield from _parquet_records(path, source, on_error)
    else:
        raise DataError(f"data source kind {source.kind!r} is not supported")


def iter_documents(source: SourceConfig) -> Iterator[str]:
    """Every document of `source`, in a deterministic order (files sorted by path)."""
    return (text for _, text, _ in iter_records(source))


def source_documents(source: SourceConfig) -> List[str]:
    """All non-empty documents of a (small) source as a list."""
    docs = [d for d in iter_documents(source) if d.strip()]
    if not docs:
        raise DataError(f"data source {source_name(source)!r}: every document is empty")
    return docs


def source_fingerprint(source: SourceConfig) -> str:
    """Identity of a source's input without reading it: what is read (kind, fields, hub
    name/subset/split/revision) and, for local files, each file's path, size and mtime."""
    spec: dict[str, Any] = {k: getattr(source, k) for k in
                            ("kind", "text_field", "template", "dataset", "subset", "split", "revision")}
    if source.kind == "embedded":
        spec["content"] = fingerprint(embedded_documents())
    elif source.path:
        spec["files"] = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in _source_files(source)]
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def fingerprint(documents: List[str]) -> str:
    """Content hash of the documents, in order: the identity of the data for caches and runs."""
    h = hashlib.sha256()
    for doc in documents:
        data = doc.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:16]
