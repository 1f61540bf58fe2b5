"""Filesystem helpers shared by every pass: atomic writes and the cache location."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional


def cache_root(configured: Optional[str] = None) -> Path:
    """Where tokenizers and tokenized data are cached: config key, $LLMEXP_CACHE, ~/.cache/llmexp."""
    root = configured or os.environ.get("LLMEXP_CACHE") or "~/.cache/llmexp"
    return Path(root).expanduser()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename: readers see the old
    file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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
