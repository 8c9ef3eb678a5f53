"""Content hashes, in one place: short keys of settings (cache keys, training identities, evaluation outcome keys),
file digests and the sampled identity of large data files. All are sha256; keys are its first hex digits."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

SAMPLED_ABOVE = 64 << 20  # files larger than this are identified by their size and first and last MiB
_SAMPLE = 1 << 20
_BLOCK = 8 << 20


def settings_key(value: Any, length: int = 16) -> str:
    """Short key of JSON-like ``value``: sha256 of its JSON with sorted keys (values JSON cannot write are written
    as ``str``), first ``length`` hex digits. Equal settings give equal keys whatever their key order."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:length]


def bytes_key(data: bytes, length: int = 16) -> str:
    """Short key of raw bytes (e.g. an array's shape and contents)."""
    return hashlib.sha256(data).hexdigest()[:length]


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's content (read in 8 MiB blocks), all 64 hex digits."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def files_digest(folder: str | os.PathLike, pattern: str) -> str:
    """sha256 of the files of ``folder`` matching ``pattern``: their names and contents, in name order (a folder of
    generated files is the same content exactly when this is equal)."""
    h = hashlib.sha256()
    for path in sorted(Path(folder).glob(pattern)):
        h.update(path.name.encode() + b"\0" + file_sha256(path).encode() + b"\0")
    return h.hexdigest()


def file_identity(path: str | os.PathLike | None) -> str | None:
    """Identity of a data file: the content hash of a small file; for a large one (the training HDF5) the hash of
    its size and first and last MiB. A path that is not a file stands for itself; None stays None."""
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        return str(path)
    h = hashlib.sha256()
    size = p.stat().st_size
    h.update(str(size).encode())
    with open(p, "rb") as f:
        if size <= SAMPLED_ABOVE:
            h.update(f.read())
        else:
            h.update(f.read(_SAMPLE))
            f.seek(size - _SAMPLE)
            h.update(f.read())
    return h.hexdigest()
