"""An independent writer of LIBERO datasets in the LeRobot v2.x layout, as openpi (``physical-intelligence/libero``)
and LeRobot (``lerobot/libero_*``) publish them, written from the layout description with pyarrow, PIL and
imageio-ffmpeg (not with the project's reader or mapping):

```
meta/info.json, meta/episodes.jsonl, meta/tasks.jsonl
data/chunk-000/episode_000000.parquet            state (8) / actions (7) / timestamp / frame_index / ...
videos/chunk-000/<camera key>/episode_000000.mp4  (camera features of dtype "video")
```
An episode is given as the arrays of a regenerated (observation-before-action) LIBERO demo; its rows are what the
published builders store: state = eef position, axis-angle, gripper qpos; the LIBERO command; frames turned
upright (rotated by 180 degrees). Videos are H.264 in RGB with -qp 0 (lossless: decoded frames equal the input).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

COLUMNS = {
    "openpi": {"state": "state", "action": "actions", "exterior": "image", "right_wrist": "wrist_image"},
    "lerobot": {
        "state": "observation.state",
        "action": "action",
        "exterior": "observation.images.image",
        "right_wrist": "observation.images.image2",
    },
    "any4lerobot": {
        "state": "observation.state",
        "action": "action",
        "exterior": "observation.images.image",
        "right_wrist": "observation.images.wrist_image",
        "joints": "observation.states.joint_state",
    },
}


def write_video(path: Path, frames: np.ndarray, fps: int = 20) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames.shape[1:3]
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (w, h),
        fps=fps,
        codec="libx264rgb",
        pix_fmt_in="rgb24",
        quality=None,
        pix_fmt_out="rgb24",
        output_params=["-qp", "0"],
        macro_block_size=1,
    )
    writer.send(None)
    for f in frames:
        writer.send(np.ascontiguousarray(f).tobytes())
    writer.close()


def _png(frame: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")
    return buf.getvalue()


def write_dataset(
    root: str | Path,
    episodes: list[tuple[str, dict]],
    *,
    layout: str = "lerobot",
    dtype: str = "video",
    upright: bool = True,
    fps: int = 10,
) -> Path:
    """``episodes``: (instruction, demo arrays as tests/official_layout.synthetic_demo(recorded="before")
    returns them). ``dtype``: "video" (MP4 files) or "image" (PNG bytes in the table). ``upright=False`` stores
    the raw (rotated) renders instead."""
    root = Path(root)
    cols = COLUMNS[layout]
    tasks: list[str] = []
    size = episodes[0][1]["obs/agentview_rgb"].shape[1]
    meta_eps, total = [], 0
    for index, (instruction, demo) in enumerate(episodes):
        if instruction not in tasks:
            tasks.append(instruction)
        n = len(demo["actions"])
        state = np.concatenate([demo["obs/ee_pos"], demo["obs/ee_ori"], demo["obs/gripper_states"]], axis=1)
        frames = {"exterior": demo["obs/agentview_rgb"], "right_wrist": demo["obs/eye_in_hand_rgb"]}
        if upright:
            frames = {k: np.rot90(v, 2, axes=(1, 2)) for k, v in frames.items()}
        table = {
            cols["state"]: pa.array(list(state.astype(np.float32)), type=pa.list_(pa.float32())),
            cols["action"]: pa.array(list(demo["actions"].astype(np.float32)), type=pa.list_(pa.float32())),
            "timestamp": pa.array(np.arange(n, dtype=np.float32) / fps),
            "frame_index": pa.array(np.arange(n, dtype=np.int64)),
            "episode_index": pa.array(np.full(n, index, dtype=np.int64)),
            "index": pa.array(np.arange(total, total + n, dtype=np.int64)),
            "task_index": pa.array(np.full(n, tasks.index(instruction), dtype=np.int64)),
        }
        if "joints" in cols:
            table[cols["joints"]] = pa.array(
                list(demo["obs/joint_states"].astype(np.float32)), type=pa.list_(pa.float32())
            )
        for slot in ("exterior", "right_wrist"):
            if dtype == "image":
                table[cols[slot]] = pa.array(
                    [{"bytes": _png(f), "path": None} for f in frames[slot]],
                    type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]),
                )
            else:
                write_video(root / f"videos/chunk-000/{cols[slot]}/episode_{index:06d}.mp4", frames[slot], fps)
        path = root / f"data/chunk-000/episode_{index:06d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(table), path)
        meta_eps.append({"episode_index": index, "tasks": [instruction], "length": n})
        total += n
    camera = {"dtype": dtype, "shape": [size, size, 3], "names": ["height", "width", "channel"]}
    info = {
        "codebase_version": "v2.1",
        "robot_type": "panda",
        "total_episodes": len(episodes),
        "total_frames": total,
        "total_tasks": len(tasks),
        "total_videos": 2 * len(episodes) if dtype == "video" else 0,
        "total_chunks": 1,
        "chunks_size": 1000,
        "fps": fps,
        "splits": {"train": f"0:{len(episodes)}"},
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
        "features": {
            cols["exterior"]: camera,
            cols["right_wrist"]: camera,
            cols["state"]: {"dtype": "float32", "shape": [8], "names": ["state"]},
            cols["action"]: {"dtype": "float32", "shape": [7], "names": ["actions"]},
            "timestamp": {"dtype": "float32", "shape": [1], "names": None},
            "frame_index": {"dtype": "int64", "shape": [1], "names": None},
            "episode_index": {"dtype": "int64", "shape": [1], "names": None},
            "index": {"dtype": "int64", "shape": [1], "names": None},
            "task_index": {"dtype": "int64", "shape": [1], "names": None},
        },
    }
    if "joints" in cols:
        info["features"][cols["joints"]] = {"dtype": "float32", "shape": [7], "names": None}
    (root / "meta").mkdir(parents=True, exist_ok=True)
    (root / "meta/info.json").write_text(json.dumps(info, indent=2))
    (root / "meta/episodes.jsonl").write_text("".join(json.dumps(e) + "\n" for e in meta_eps))
    (root / "meta/tasks.jsonl").write_text(
        "".join(json.dumps({"task_index": i, "task": t}) + "\n" for i, t in enumerate(tasks))
    )
    return root
