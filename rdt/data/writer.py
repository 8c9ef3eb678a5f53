"""Writing the training HDF5 (docs/formats.md §2): the one writer every demo source of `convert` uses.

A source maps its demonstrations into :class:`Episode` arrays (unified state and action, the raw LIBERO command,
upright frames per camera slot) and says where each comes from (:class:`Origin`); :func:`write_training_file`
streams them into the file in order, one episode group each, and returns the data's identity (``dataset_id``).
The root attributes hold the fixed facts of the mapping (action space, control frequency, cameras, availability
mask of the :class:`Header`'s state slots), the frame size (from the first episode; every episode must share it)
and the provenance of the :class:`Header`. The file appears under its name only when complete
(``rdt.utils.atomic``); before each episode the free space is checked, since HDF5 meets a full disk badly.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import shutil
import sys
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

import rdt
from rdt import statevec
from rdt.data import TRAIN_FORMAT
from rdt.errors import UserError
from rdt.libero import mapping, suites
from rdt.utils.atomic import atomic_path, disk_error_line
from rdt.utils.progress import Progress

IMAGE_COMPRESSION = {"compression": "gzip", "compression_opts": 4}


@dataclass
class Episode:
    """One demonstration mapped for training: the datasets of its episode group."""

    state: np.ndarray  # (T,128) float32
    action: np.ndarray  # (T,128) float32
    libero_action: np.ndarray  # (T,7) float64
    images: dict[str, np.ndarray]  # slot -> (T,S,S,3) uint8, upright
    dropped_noops: int = 0  # no-op steps left out (drop_noops)


@dataclass(frozen=True)
class Origin:
    """Where an episode comes from: the attributes of its episode group (besides its step and no-op counts)."""

    task: str  # task name
    suite: str
    instruction: str  # the benchmark's instruction (what training and evaluation condition on)
    source_instruction: str  # the source's own wording (provenance)
    source_file: str  # demo file or dataset folder
    source_demo: str  # demo_<i> or episode_<i>
    obs_convention: str  # mapping.OBS_CONVENTIONS


@dataclass(frozen=True)
class Header:
    """The file-level facts a source knows before writing: the root attributes besides those the episodes give."""

    suite: str
    tasks: list[str]  # selected task names, suite order
    sources: list[str]  # each task's demo file or dataset folder
    obs_conventions: dict[str, str]  # demo file or dataset folder -> mapping.OBS_CONVENTIONS
    source: str  # "official" | "lerobot:<layout>"
    drop_noops: bool
    state_slots: list[str]  # the state slots filled (the mask is those plus the action slots)


def write_training_file(
    path: str | Path, episodes: Iterable[tuple[Origin, Episode]], header: Header, total: int
) -> str:
    """Write ``episodes`` (``total`` of them, read lazily: one in memory at a time) into the training HDF5 at
    ``path``; returns its ``dataset_id`` (16 hex: sha256 of every episode's index, task, instruction, arrays and
    frames in order; what training reads, not the HDF5 bytes). Episodes whose frame size differs from the first
    one's are a UserError naming their origin."""
    size_seen = None
    dropped = 0
    digest = hashlib.sha256()
    with (
        atomic_path(path) as tmp,
        _quiet_hdf5_aftermath(),
        h5py.File(tmp, "w") as out,
        Progress(total, "convert", unit="demo", every=10.0) as progress,
    ):
        for index, (origin, ep) in enumerate(episodes):
            size = next(iter(ep.images.values())).shape[1]
            if size_seen is None:
                size_seen = size
                _write_root_attrs(out, size, header.state_slots)
            elif size != size_seen:
                raise UserError(
                    f"{origin.source_file}: {origin.source_demo} has {size}x{size} frames, expected {size_seen}x"
                    f"{size_seen} like the demos converted before it (set --image-size to resize every source to "
                    "one size)"
                )
            _check_space(tmp, path, ep)
            _write_episode(out, index, ep, origin, digest)
            dropped += ep.dropped_noops
            progress.update(1, task=origin.task[:40])
        dataset_id = digest.hexdigest()[:16]
        _write_provenance(out, header, dropped, dataset_id)
    return dataset_id


def _write_root_attrs(out: h5py.File, image_size: int, state_slots: list[str]) -> None:
    out.attrs["format"] = TRAIN_FORMAT
    out.attrs["action_space"] = mapping.ACTION_SPACE
    out.attrs["control_frequency"] = suites.CONTROL_FREQUENCY_HZ
    out.attrs["state_dim"] = statevec.STATE_DIM
    out.attrs["image_size"] = image_size
    out.attrs["cameras"] = json.dumps(
        {slot: (cam[0].removesuffix("_rgb") if cam else None) for slot, cam in mapping.CAMERAS.items()}
    )
    out.attrs["mask"] = mapping.availability_mask(state_slots).astype(np.float32)
    out.attrs["state_slots"] = json.dumps(list(state_slots))


def _write_provenance(out: h5py.File, header: Header, dropped: int, dataset_id: str) -> None:
    """Root attrs written once every episode is in: what was converted, how, and the data's identity."""
    out.attrs["source"] = header.source
    out.attrs["drop_noops"] = bool(header.drop_noops)
    out.attrs["dropped_noops"] = int(dropped)
    out.attrs["obs_conventions"] = json.dumps(header.obs_conventions)
    out.attrs["dataset_id"] = dataset_id
    out.attrs["created_by"] = json.dumps(
        {
            "rdt_version": rdt.__version__,
            "suite": header.suite,
            "tasks": list(header.tasks),
            "source": header.source,
            "sources": list(header.sources),
            "dataset": dataset_id,
        }
    )


def _write_episode(out: h5py.File, index: int, ep: Episode, origin: Origin, digest) -> None:
    grp = out.create_group(f"episodes/{index:06d}")
    grp.attrs.update(
        task=origin.task,
        suite=origin.suite,
        instruction=origin.instruction,
        source_instruction=origin.source_instruction,
        source_file=origin.source_file,
        source_demo=origin.source_demo,
        num_steps=ep.state.shape[0],
        obs_convention=origin.obs_convention,
        dropped_noops=ep.dropped_noops,
    )
    grp.create_dataset("state", data=ep.state)
    grp.create_dataset("action", data=ep.action)
    grp.create_dataset("libero_action", data=ep.libero_action)
    for slot, frames in ep.images.items():
        grp.create_dataset(f"images/{slot}", data=frames, chunks=(1,) + frames.shape[1:], **IMAGE_COMPRESSION)
    digest.update(f"{index}|{origin.task}|{origin.instruction}|".encode())
    for arr in (ep.state, ep.action, ep.libero_action, *(ep.images[k] for k in sorted(ep.images))):
        digest.update(np.ascontiguousarray(arr).tobytes())


#: set when an HDF5 write failed on a full or read-only disk: HDF5 then holds objects it cannot flush, and the
#: command line (rdt.cli) exits at once after reporting (freeing them at interpreter exit crashes)
HDF5_LEFT_BROKEN = False


@contextlib.contextmanager
def _quiet_hdf5_aftermath():
    """When HDF5 meets a full or read-only disk anyway (filled by another process after :func:`_check_space`),
    each of its objects fails again as it is freed ("Exception ignored in h5py...__dealloc__"); those repeats of
    the one error the command reports are not printed, and :data:`HDF5_LEFT_BROKEN` is set."""
    previous, previous_except = sys.unraisablehook, sys.excepthook

    def hook(u):
        if not ("h5py" in repr(u.object) and disk_error_line(u.exc_value) is not None):
            previous(u)

    def excepthook(kind, value, tb):  # Cython prints a dealloc's error through it first
        frames = traceback.extract_tb(tb)
        if not (frames and "h5py" in frames[-1].filename and disk_error_line(value) is not None):
            previous_except(kind, value, tb)

    sys.unraisablehook, sys.excepthook = hook, excepthook
    try:
        yield
    except BaseException as e:
        if disk_error_line(e) is not None:
            global HDF5_LEFT_BROKEN
            HDF5_LEFT_BROKEN = True
        raise
    finally:
        sys.unraisablehook, sys.excepthook = previous, previous_except


def _check_space(tmp: Path, out_path: str | Path, ep: Episode) -> None:
    """OSError(ENOSPC) naming ``out_path`` unless its folder has room for the episode uncompressed (an upper
    bound) plus a margin for HDF5's metadata: HDF5 itself meets a full disk only when it flushes, and then leaves
    the file in a state that crashes the interpreter (segmentation fault) when it is closed."""
    need = ep.state.nbytes + ep.action.nbytes + ep.libero_action.nbytes + sum(v.nbytes for v in ep.images.values())
    free = shutil.disk_usage(tmp.parent).free
    if free < need + (1 << 20):
        raise OSError(
            errno.ENOSPC,
            f"no space left on device ({free} bytes free, the next episode needs up to {need + (1 << 20)})",
            str(out_path),
        )
