"""Content digests of files (what manifests record to tie an artifact to its bytes and its source)
and of arrays (what a cached conversion was made from)."""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path

import numpy as np


def sha256(path: Path) -> str:
    """sha256 of a file, or of a directory's files (names and bytes, in sorted order)."""
    digest = hashlib.sha256()
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def arrays(values) -> str:
    """sha1 of arrays (their dtypes, shapes and bytes, in order): calibration data a cached
    conversion was made from."""
    digest = hashlib.sha1()
    for array in values:
        array = np.ascontiguousarray(array)
        digest.update(str((array.dtype, array.shape)).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def gzip_size(path: Path) -> int:
    """Bytes of ``path`` after gzip -9 (what a download or flash image costs), compressed a block
    at a time: neither the file nor its compressed form is held whole."""
    compressor, size = zlib.compressobj(9, zlib.DEFLATED, 31), 0  # wbits 31: the gzip container
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            size += len(compressor.compress(block))
    return size + len(compressor.flush())


def file_record(path: Path, *, compressed: bool = True) -> dict:
    """What a manifest says of one file: its name, size, size after gzip (None with ``compressed``
    false) and sha256."""
    return {"file": path.name, "bytes": path.stat().st_size,
            "gzip_bytes": gzip_size(path) if compressed else None, "sha256": sha256(path)}
