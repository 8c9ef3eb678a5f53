"""Rollout videos: MP4 (H.264 via imageio-ffmpeg) written under a temporary ``.mp4`` name, checked (decodable, with
the expected number of frames) and renamed only then: an interrupted or failed write (ffmpeg reports a full disk on
its stderr, and closing the writer does not raise) never leaves a file with the final name."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rdt.utils.atomic import atomic_path


def video_name(task: str, init_state: int, success: bool) -> str:
    """``<task>__init<i>__<success|failure>.mp4``."""
    return f"{task}__init{init_state}__{'success' if success else 'failure'}.mp4"


def write_video(path: str | os.PathLike, frames: Sequence[np.ndarray], fps: int) -> Path:
    """Write (H, W, 3) uint8 frames as an MP4 at ``fps``; H and W must be even (yuv420p)."""
    import imageio.v2 as imageio

    if not len(frames):
        raise ValueError(f"{path}: no frames to write")
    h, w = frames[0].shape[:2]
    if h % 2 or w % 2:
        raise ValueError(f"{path}: frame size {h}x{w} must be even for H.264 yuv420p")
    path = Path(path)
    with atomic_path(path, suffix=".tmp.mp4") as tmp:  # ffmpeg picks the container by the extension
        try:
            writer = imageio.get_writer(
                tmp,
                format="FFMPEG",
                mode="I",
                fps=fps,
                codec="libx264",
                pixelformat="yuv420p",
                macro_block_size=2,
                ffmpeg_log_level="error",
            )
            try:
                for frame in frames:
                    writer.append_data(np.asarray(frame, dtype=np.uint8))
            finally:
                writer.close()
        except (OSError, RuntimeError, ValueError) as e:  # ffmpeg died (full disk, ...): its pipe broke
            _raise_write_error(path, tmp, f"writing failed ({e})")
        check_video(path, tmp, len(frames))
    return path


def check_video(path: Path, written: Path, expected_frames: int) -> None:
    """Decode ``written`` (the temporary file of ``path``) and raise OSError unless it has ``expected_frames``."""
    from imageio_ffmpeg import count_frames_and_secs

    try:
        frames, _ = count_frames_and_secs(str(written))
    except (RuntimeError, OSError) as e:
        _raise_write_error(path, written, f"the written file does not decode ({str(e).splitlines()[0]})")
    if frames != expected_frames:
        _raise_write_error(path, written, f"the written file has {frames} of {expected_frames} frames")


def _raise_write_error(path: Path, written: Path, what: str) -> None:
    """An OSError naming ``path``: ENOSPC when its folder has (almost) no space left, else EIO."""
    try:
        free = shutil.disk_usage(written.parent).free
    except OSError:
        free = None
    if free is not None and free < (1 << 20):
        raise OSError(
            errno.ENOSPC, f"no space left on device ({free} bytes free); video not written: {what}", str(path)
        )
    raise OSError(errno.EIO, f"video not written: {what}", str(path))


def read_video(path: str | os.PathLike) -> np.ndarray:
    """Decode an MP4 back into (T, H, W, 3) uint8 frames; an unreadable file is a UserError naming it."""
    import imageio.v2 as imageio

    from rdt.errors import UserError

    try:
        frames = list(imageio.mimread(path, format="FFMPEG", memtest=False))
    except (OSError, RuntimeError, ValueError, StopIteration) as e:
        raise UserError(
            f"{path}: unreadable video ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
            "delete it and rerun the evaluation that wrote it"
        ) from None
    if not frames:
        raise UserError(f"{path}: video without frames; delete it and rerun the evaluation that wrote it")
    return np.stack(frames)
