"""Rollout videos: MP4 (H.264 via imageio-ffmpeg) written under a temporary ``.mp4`` name and renamed when complete
(an interrupted write never leaves a file with the final name)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

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
    with atomic_path(path, suffix=".tmp.mp4") as tmp:      # ffmpeg picks the container by the extension
        writer = imageio.get_writer(tmp, format="FFMPEG", mode="I", fps=fps, codec="libx264",
                                    pixelformat="yuv420p", macro_block_size=2, ffmpeg_log_level="error")
        try:
            for frame in frames:
                writer.append_data(np.asarray(frame, dtype=np.uint8))
        finally:
            writer.close()
    return path


def read_video(path: str | os.PathLike) -> np.ndarray:
    """Decode an MP4 back into (T, H, W, 3) uint8 frames."""
    import imageio.v2 as imageio

    return np.stack(list(imageio.mimread(path, format="FFMPEG", memtest=False)))
