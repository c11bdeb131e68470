"""Atomic output: write to a temporary file beside the destination, then rename.

A crash, a KeyboardInterrupt or a full disk leaves either the old file or nothing,
never a half-written file that looks valid.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(destination: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``destination``; rename it into place on success.

    The temporary name keeps the destination's suffix (Keras and converters check
    it). Works for files and for directories (e.g. a SavedModel).

    Example:
        >>> with atomic_path("out/model.tflite") as tmp:
        ...     tmp.write_bytes(data)
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{destination.stem}.", suffix=f".tmp{destination.suffix}",
                                    dir=destination.parent)
    os.close(handle)
    os.unlink(name)  # the writer creates it (some writers refuse an existing file)
    tmp = Path(name)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{destination}: the writer produced nothing")
        if destination.is_dir() and not destination.is_symlink():
            shutil.rmtree(destination)
        os.replace(tmp, destination)
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists() or tmp.is_symlink():
            tmp.unlink()


def write_bytes(destination: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``destination`` atomically, flushed to disk."""
    with atomic_path(destination) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    return Path(destination)


def write_text(destination: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``destination`` atomically."""
    return write_bytes(destination, text.encode("utf-8"))
