"""Filesystem helpers shared by every pass: atomic writes and the cache location."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

TEMP_SUFFIX = ".tmp"


def cache_root(configured: Optional[str] = None) -> Path:
    """Where tokenizers and tokenized data are cached: config key, $LLMEXP_CACHE, ~/.cache/llmexp."""
    root = configured or os.environ.get("LLMEXP_CACHE") or "~/.cache/llmexp"
    return Path(root).expanduser()


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path in `path`'s folder to write to; on success it is fsynced and renamed
    over `path`, so readers see the old file or the new one, never half of one. A kill in
    between leaves `.<name>.*.tmp`, which `remove_stale_temp_files` clears."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Temporary files a killed process left in `folder` (not recursive); returns them."""
    stale = sorted(Path(folder).glob(f".*{TEMP_SUFFIX}")) if Path(folder).is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


@contextmanager
def exclusive(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive lock on `lock_file` (waiting for it): processes that would build the same
    cache entry at once (a study's parallel runs, sweep agents) take turns, and the later one
    finds the entry made."""
    import fcntl

    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def checkpoint_file_problem(path: str | os.PathLike) -> Optional[str]:
    """Why the file `path` is no checkpoint torch can load (None: it looks like one, or it is no
    file: a folder, or not there yet, is for the caller to judge). torch.save writes a
    zip archive (torch >= 1.6): a text file, a raw pickle or a file cut short by a kill is caught
    here from the archive's end record, without importing torch."""
    import zipfile

    path = Path(path).expanduser()
    if path.is_file() and not zipfile.is_zipfile(path):
        return f"{path} is not a torch checkpoint (a zip archive written by torch.save): it is truncated or of another format"
    return None
