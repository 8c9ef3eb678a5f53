"""Training data: the training HDF5 (docs/formats.md §2; written by rdt.data.writer), statistics, the torch Dataset.

This module holds what every reader of the training file shares: its format name, opening it with a format check
and listing its episodes in order.
"""

from __future__ import annotations

from pathlib import Path

import h5py

from rdt.errors import UserError

TRAIN_FORMAT = "rdt-libero-train/1"  # the value `convert` writes to the root attribute `format`


def open_training_file(path: str | Path) -> h5py.File:
    """Open a training HDF5 read-only; anything that is not one (by the `format` attribute) is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: training data file not found (made by `python -m rdt convert`)")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise UserError(f"{path}: not a readable HDF5 file ({e})") from None
    fmt = f.attrs.get("format")
    if fmt != TRAIN_FORMAT or "episodes" not in f:
        f.close()
        raise UserError(
            f"{path}: root attribute format={fmt!r} and group 'episodes' expected "
            f"format={TRAIN_FORMAT!r} (a file written by `python -m rdt convert`)"
        )
    return f


def episode_names(f: h5py.File) -> list[str]:
    """Episode group names (``000000``, ``000001``, ...) in index order."""
    return sorted(f["episodes"])
