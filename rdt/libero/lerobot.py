"""LeRobot-format LIBERO datasets (v2.x layout) -> the training HDF5 of docs/formats.md §2.

The layout (LeRobot ``codebase_version`` v2.0 / v2.1)::

    meta/info.json          codebase_version, fps, features {key: {dtype, shape, names}}, data_path, video_path,
                            chunks_size
    meta/episodes.jsonl     one line per episode: {"episode_index", "tasks": [instruction], "length"}
    meta/tasks.jsonl        one line per task: {"task_index", "task"}
    data/chunk-000/episode_000000.parquet     one row per step: state, action, frame_index, episode_index, ...
    videos/chunk-000/<camera key>/episode_000000.mp4    (features of dtype "video"; dtype "image" features are
                                                          PNG/JPEG bytes in the parquet table instead)

Three column layouts are recognised (:data:`LAYOUTS`): openpi's ``physical-intelligence/libero``
(``image``, ``wrist_image``, ``state``, ``actions``), LeRobot's ``lerobot/libero_*`` / ``HuggingFaceVLA/libero``
(``observation.images.image``, ``observation.images.image2``, ``observation.state``, ``action``) and any4lerobot's
conversions (``observation.images.wrist_image``, plus ``observation.states.joint_state``). All hold the
8-dim state (eef position 3, axis-angle 3, gripper qpos 2; mapping.state_from_lerobot) and LIBERO's 7-dim command
(mapping.action_to_unified), recorded BEFORE the action at the same row (obs_before_action), and upright frames
(their builders flipped the renders; a layout declares its frame convention and mapping.to_upright flips only
rotated ones). Episodes are matched to the suite's tasks by their instruction. Read with pyarrow (parquet),
imageio-ffmpeg (MP4, any codec the bundled ffmpeg decodes: h264, AV1, ...) and PIL (image bytes); the
``lerobot`` package itself is not needed (it does not install beside the pinned torch).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rdt.data.writer import Episode, Origin
from rdt.errors import UserError
from rdt.libero import mapping, suites
from rdt.libero.sources import DEFAULT_MIN_STEPS, ConversionPlan, SourceTask, check_counts
from rdt.utils.files import read_json

#: layout name -> column of the state, the action and each camera slot, and how the frames are stored
LAYOUTS: dict[str, dict] = {
    "openpi": {
        "dataset": "physical-intelligence/libero",
        "state": "state",
        "action": "actions",
        "cameras": {"exterior": "image", "right_wrist": "wrist_image"},
        "frames": mapping.FRAMES_UPRIGHT,
    },
    "lerobot": {
        "dataset": "lerobot/libero_*, HuggingFaceVLA/libero",
        "state": "observation.state",
        "action": "action",
        "cameras": {"exterior": "observation.images.image", "right_wrist": "observation.images.image2"},
        "frames": mapping.FRAMES_UPRIGHT,
    },
    # any4lerobot's robomimic2lerobot / World-In-Your-Hands builders: also keep the joint positions
    "any4lerobot": {
        "dataset": "any4lerobot libero conversions (observation.states.joint_state)",
        "state": "observation.state",
        "action": "action",
        "joints": "observation.states.joint_state",
        "cameras": {"exterior": "observation.images.image", "right_wrist": "observation.images.wrist_image"},
        "frames": mapping.FRAMES_UPRIGHT,
    },
}
DEFAULT_DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
DEFAULT_VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"


def normalise(text: str) -> str:
    """Instruction matching: case, surrounding blanks, repeated blanks and a final full stop do not count."""
    return re.sub(r"\s+", " ", str(text).strip().lower()).removesuffix(".").strip()


@dataclass
class LeRobotDataset:
    root: Path
    info: dict
    layout: str
    episodes: list[dict]  # episodes.jsonl rows, in episode order
    frames: str = mapping.FRAMES_UPRIGHT
    _videos: dict = field(default_factory=dict)

    @property
    def columns(self) -> dict:
        return LAYOUTS[self.layout]

    @property
    def joints(self) -> str | None:
        """The joint-position column when the dataset has one (then the state is complete)."""
        key = self.columns.get("joints")
        return key if key and key in self.info["features"] else None

    @property
    def state_slots(self) -> list[str]:
        return mapping.STATE_SLOTS if self.joints else mapping.EEF_STATE_SLOTS

    def chunk(self, index: int) -> int:
        return index // int(self.info.get("chunks_size") or 1000)

    def data_file(self, index: int) -> Path:
        pattern = self.info.get("data_path") or DEFAULT_DATA_PATH
        return self.root / pattern.format(episode_chunk=self.chunk(index), episode_index=index)

    def video_file(self, index: int, key: str) -> Path:
        pattern = self.info.get("video_path") or DEFAULT_VIDEO_PATH
        return self.root / pattern.format(episode_chunk=self.chunk(index), video_key=key, episode_index=index)


def _json(path: Path) -> dict:
    return read_json(
        path,
        "missing (a LeRobot v2.x dataset has meta/info.json, meta/episodes.jsonl, meta/tasks.jsonl, data/ and videos/)",
    )


def _jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise UserError(f"{path}: missing (a LeRobot v2.x dataset lists its episodes in meta/episodes.jsonl)")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as e:
                raise UserError(f"{path}: line {n} is not valid JSON ({e})") from None
    return rows


def open_dataset(root: str | Path, frames: str | None = None) -> LeRobotDataset:
    """Check the layout of a LeRobot dataset folder and recognise its columns; ``frames`` overrides the
    layout's declared frame convention (mapping.FRAME_CONVENTIONS)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"--demos {root}: no such folder (expected a LeRobot dataset folder with meta/info.json)")
    info = _json(root / "meta" / "info.json")
    version = str(info.get("codebase_version", ""))
    if not version.startswith("v2."):
        raise UserError(
            f"{root / 'meta' / 'info.json'}: codebase_version {version or None!r}; this reader knows "
            "the LeRobot v2.x layout (one parquet file and one MP4 per camera per episode)"
        )
    features = info.get("features")
    if not isinstance(features, dict):
        raise UserError(f"{root / 'meta' / 'info.json'}: no 'features' table")
    found = [
        name
        for name, cols in LAYOUTS.items()
        if all(k in features for k in (cols["state"], cols["action"], *cols["cameras"].values()))
    ]
    if not found:
        raise UserError(
            f"{root / 'meta' / 'info.json'}: features {sorted(features)} match no known LIBERO layout; "
            + "; ".join(
                f"{n} ({c['dataset']}): {c['state']}, {c['action']}, {', '.join(c['cameras'].values())}"
                for n, c in LAYOUTS.items()
            )
        )
    layout = found[0]
    cols = LAYOUTS[layout]
    for key, dim in ((cols["state"], mapping.LEROBOT_STATE_DIM), (cols["action"], 7)):
        shape = list(features[key].get("shape") or [])
        if shape != [dim]:
            raise UserError(
                f"{root / 'meta' / 'info.json'}: feature {key!r} has shape {shape}, expected [{dim}] "
                f"(LIBERO {'state: eef pos 3, axis-angle 3, gripper qpos 2' if dim == 8 else 'command'})"
            )
    for key in cols["cameras"].values():
        if features[key].get("dtype") not in ("video", "image"):
            raise UserError(
                f"{root / 'meta' / 'info.json'}: camera {key!r} has dtype "
                f"{features[key].get('dtype')!r}, expected 'video' or 'image'"
            )
    episodes = sorted(_jsonl(root / "meta" / "episodes.jsonl"), key=lambda e: int(e["episode_index"]))
    frames = frames or cols["frames"]
    if frames not in mapping.FRAME_CONVENTIONS:
        raise UserError(f"frames {frames!r}: expected one of {mapping.FRAME_CONVENTIONS}")
    return LeRobotDataset(root, info, layout, episodes, frames)


def _instruction(ds: LeRobotDataset, ep: dict) -> str:
    tasks = ep.get("tasks")
    if not tasks:
        raise UserError(
            f"{ds.root / 'meta' / 'episodes.jsonl'}: episode {ep.get('episode_index')} names no task "
            '(expected "tasks": [instruction])'
        )
    return str(tasks[0])


def _suite_of(ds: LeRobotDataset, instructions: set[str], suite: str | None) -> str:
    if suite:
        return suite
    for name in suites.suite_names():
        known = {normalise(t.language) for t in suites.tasks(name)}
        if instructions <= known:
            return name
    raise UserError(
        f"{ds.root}: its {len(instructions)} instructions belong to no single suite (a dataset of "
        "several suites, e.g. physical-intelligence/libero); choose one with --suite "
        f"({', '.join(suites.suite_names())}); episodes of other suites are left out"
    )


def read_table(ds: LeRobotDataset, index: int):
    import pyarrow.parquet as pq

    path = ds.data_file(index)
    try:
        return pq.read_table(path)
    except FileNotFoundError:
        raise UserError(f"{path}: missing (episode {index} of {ds.root})") from None
    except Exception as e:  # pyarrow raises several kinds for a broken file
        raise UserError(f"{path}: not a readable parquet file ({e})") from None


def _column(table, key: str, dim: int, path: Path) -> np.ndarray:
    if key not in table.column_names:
        raise UserError(f"{path}: missing column {key!r}")
    values = np.asarray(table.column(key).to_pylist(), dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != dim:
        raise UserError(f"{path}: column {key!r} has shape {values.shape}, expected (T,{dim})")
    return values


def read_video(path: Path, length: int) -> np.ndarray:
    """An MP4 -> (length, H, W, 3) uint8 RGB frames (imageio-ffmpeg)."""
    import imageio_ffmpeg

    if not path.is_file():
        raise UserError(f"{path}: missing video")
    try:
        reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
        meta = next(reader)
        w, h = meta["size"]
        frames = [np.frombuffer(b, dtype=np.uint8).reshape(h, w, 3) for b in reader]
    except (RuntimeError, OSError, StopIteration) as e:
        raise UserError(f"{path}: not a readable video ({e})") from None
    if len(frames) != length:
        raise UserError(f"{path}: {len(frames)} frames, expected {length} (one per row of the episode's table)")
    return np.stack(frames)


def _images(table, key: str, path: Path) -> np.ndarray:
    from PIL import Image

    if key not in table.column_names:
        raise UserError(f"{path}: missing column {key!r}")
    out = []
    for cell in table.column(key).to_pylist():
        data = cell.get("bytes") if isinstance(cell, dict) else cell
        if not data:
            raise UserError(f"{path}: column {key!r} holds an image without bytes (expected encoded PNG/JPEG)")
        out.append(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    return np.stack(out)


def read_episode(ds: LeRobotDataset, index: int, drop_noops: bool = False, image_size: int | None = None) -> Episode:
    """One episode mapped like a regenerated demo file's: row t pairs observation t with action t."""
    cols, features = ds.columns, ds.info["features"]
    table = read_table(ds, index)
    path = ds.data_file(index)
    state = _column(table, cols["state"], mapping.LEROBOT_STATE_DIM, path)
    actions = _column(table, cols["action"], 7, path)
    n = len(actions)
    images = {}
    for slot, key in cols["cameras"].items():
        if features[key]["dtype"] == "video":
            raw = read_video(ds.video_file(index, key), n)
        else:
            raw = _images(table, key, path)
        if raw.shape[1] != raw.shape[2]:
            raise UserError(f"{path}: camera {key!r} frames are {raw.shape[2]}x{raw.shape[1]}, expected square")
        images[slot] = mapping.to_upright(raw, ds.frames)
    keep = ~mapping.noop_mask(actions) if drop_noops else np.ones(n, dtype=bool)
    images = {s: f[keep] for s, f in images.items()}
    if image_size is not None:
        images = {s: mapping.resize(f, image_size) for s, f in images.items()}
    sizes = {f.shape[1] for f in images.values()}
    if len(sizes) != 1:
        raise UserError(f"{path}: cameras have different image sizes {sorted(sizes)}; set --image-size")
    joints = _column(table, ds.joints, 7, path)[keep] if ds.joints else None
    unified_state = mapping.state_from_lerobot(state[keep], joints)
    action = mapping.action_to_unified(actions[keep]).astype(np.float32)
    if not (np.isfinite(unified_state).all() and np.isfinite(action).all()):
        raise UserError(f"{path}: non-finite values in {cols['state']!r} or {cols['action']!r}")
    return Episode(unified_state, action, actions[keep], images, int(n - keep.sum()))


def _select_sources(
    ds: LeRobotDataset, suite: str | None, selectors: list[str] | None
) -> tuple[str, list[SourceTask], dict[str, list[dict]]]:
    """``(suite, sources, episodes by normalised instruction)``: the selected tasks of the dataset's suite that have
    episodes, matched by instruction; what is left out is printed."""
    by_instruction: dict[str, list[dict]] = {}
    for ep in ds.episodes:
        by_instruction.setdefault(normalise(_instruction(ds, ep)), []).append(ep)
    suite = _suite_of(ds, set(by_instruction), suite)
    chosen = suites.select_tasks(suite, selectors)
    sources = [
        SourceTask(t, ds.root, t.language, pairing=mapping.OBS_BEFORE_ACTION)
        for t in chosen
        if normalise(t.language) in by_instruction
    ]
    if not sources:
        raise UserError(
            f"{ds.root}: none of the {len(chosen)} selected task(s) of suite {suite!r} (selectors: "
            f"{selectors or 'all'}) has an episode; its instructions are e.g. {sorted(by_instruction)[:3]}"
        )
    left_out = sum(len(v) for k, v in by_instruction.items() if k not in {normalise(s.task.language) for s in sources})
    print(
        f"{ds.root}: LeRobot {ds.info.get('codebase_version')} layout {ds.layout!r} ({ds.columns['dataset']}), "
        f"frames {ds.frames}; {suite}: {len(sources)} selected task(s) with episodes, {left_out} episode(s) of "
        "other tasks left out"
    )
    return suite, sources, by_instruction


def _choose_episodes(
    ds: LeRobotDataset, eps: list[dict], demos_per_task: int | None, min_steps: int, drop_noops: bool
) -> tuple[list[str], list[str]]:
    """``(chosen, skipped)`` episode names: the first ``demos_per_task`` of ``eps`` (all when None) giving at least
    ``min_steps`` training steps, and the shorter ones met on the way (reported). The length comes from
    meta/episodes.jsonl; the table is read only when it is not there or no-ops are dropped."""
    keys, skipped = [], []
    for ep in eps:
        if demos_per_task is not None and len(keys) == demos_per_task:
            break
        name = f"episode_{int(ep['episode_index']):06d}"
        n = int(ep.get("length") or 0)
        if drop_noops or not n:
            actions = _column(
                read_table(ds, int(ep["episode_index"])),
                ds.columns["action"],
                7,
                ds.data_file(int(ep["episode_index"])),
            )
            n = len(actions) - (int(mapping.noop_mask(actions).sum()) if drop_noops else 0)
        (keys if n >= min_steps else skipped).append(name)
        if n < min_steps:
            print(f"skipping {ds.root}:{name}: {n} training steps < --min-steps {min_steps}")
    return keys, skipped


def convert(
    inputs: list[str],
    out_path: str | Path,
    suite: str | None = None,
    selectors: list[str] | None = None,
    demos_per_task: int | None = None,
    min_steps: int = DEFAULT_MIN_STEPS,
    drop_noops: bool = False,
    image_size: int | None = None,
    frames: str | None = None,
) -> dict:
    """Convert a LeRobot dataset folder (``inputs``: exactly one); the summary of ConversionPlan.write."""
    if len(inputs) != 1:
        raise UserError(f"--source lerobot reads one dataset folder, got {len(inputs)}: {inputs}")
    check_counts(demos_per_task, min_steps)
    ds = open_dataset(inputs[0], frames)
    suite, sources, by_instruction = _select_sources(ds, suite, selectors)
    plan = ConversionPlan(suite, f"lerobot:{ds.layout}", drop_noops, min_steps, ds.state_slots)
    for src in sources:
        eps = by_instruction[normalise(src.task.language)]
        src.source_instruction = _instruction(ds, eps[0])
        keys, skipped = _choose_episodes(ds, eps, demos_per_task, min_steps, drop_noops)
        plan.add(src, keys, skipped)
    return plan.write(out_path, _episodes(ds, plan, image_size))


def _episodes(ds: LeRobotDataset, plan: ConversionPlan, image_size: int | None) -> Iterator[tuple[Origin, Episode]]:
    """The planned episodes, read one at a time."""
    for src, keys in plan.tasks:
        for key in keys:
            yield src.origin(key), read_episode(ds, int(key.removeprefix("episode_")), plan.drop_noops, image_size)
