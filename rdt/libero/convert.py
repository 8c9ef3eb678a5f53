"""Convert official LIBERO demo files (``<task>_demo.hdf5``, robomimic layout) into one training HDF5.

Selects tasks of a suite by name, index or pattern, takes the first N usable demos of each task (in numeric
demo order), maps state and action into RDT's 128-dim unified vectors (rdt.libero.mapping), turns the frames
upright and writes the layout of docs/formats.md §2. How a file pairs observations with actions is detected per
file (:func:`detect_pairing`): official files record each observation after its action (observation j is paired
with action j+1: a demo of T steps gives T-1 training steps), regenerated files (OpenVLA) before it (T steps).
No-op steps are dropped when asked (``drop_noops``). Demos with fewer than --min-steps training steps are reported
and skipped, never padded. Bad files give an error naming the file, the key and what was expected.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import re
import shutil
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

import rdt
from rdt import statevec
from rdt.data import TRAIN_FORMAT
from rdt.errors import UserError
from rdt.libero import mapping, suites
from rdt.utils.atomic import atomic_path
from rdt.utils.progress import Progress

DEMO_SUFFIX = "_demo.hdf5"
SOURCES = ("official", "lerobot")  # --source: robomimic HDF5 files (official or regenerated), LeRobot v2.x
DEFAULT_MIN_STEPS = 10  # 0.5 s at 20 Hz; shorter recordings are not usable demonstrations
IMAGE_COMPRESSION = {"compression": "gzip", "compression_opts": 4}
_DEMO_KEY = re.compile(r"^demo_(\d+)$")

# demo dataset -> (trailing shape, expected kind); "T" is the demo length, "S" the image size.
_LOW_DIM = {
    "actions": (7,),
    "obs/joint_states": (7,),
    "obs/gripper_states": (2,),
    "obs/ee_pos": (3,),
    "obs/ee_ori": (3,),
}


@dataclass
class SourceTask:
    task: suites.Task
    path: Path
    instruction: str  # the benchmark's instruction (what evaluation conditions on)
    source_instruction: str = ""  # the file's problem_info language_instruction (provenance)
    pairing: str = mapping.OBS_AFTER_ACTION  # the file's observation/action convention (detect_pairing)


@dataclass
class Episode:
    state: np.ndarray  # (T,128) float32
    action: np.ndarray  # (T,128) float32
    libero_action: np.ndarray  # (T,7) float64
    images: dict[str, np.ndarray]  # slot -> (T,S,S,3) uint8, upright
    dropped_noops: int = 0  # no-op steps left out (drop_noops)


# ------------------------------------------------------------------------------------------------ finding files


def find_demo_files(inputs: list[str]) -> dict[str, Path]:
    """Task name -> demo file, from files and folders (searched recursively for ``*_demo.hdf5``)."""
    found: dict[str, Path] = {}
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files = sorted(p.rglob(f"*{DEMO_SUFFIX}"))
        elif p.is_file():
            if not p.name.endswith(DEMO_SUFFIX):
                raise UserError(f"{p}: expected a LIBERO demo file named '<task name>{DEMO_SUFFIX}'")
            files = [p]
        else:
            raise UserError(f"--demos {item}: no such file or folder")
        for f in files:
            name = f.name[: -len(DEMO_SUFFIX)]
            if name in found and found[name].resolve() != f.resolve():
                raise UserError(f"two demo files for task {name!r}: {found[name]} and {f}; pass only one")
            found[name] = f
    if not found:
        raise UserError(f"no '*{DEMO_SUFFIX}' files found in {', '.join(inputs)}")
    return found


def infer_suite(names: list[str]) -> str:
    """The first suite (in suite order) whose task table holds every given task name."""
    for suite in suites.suite_names():
        known = {t.name for t in suites.tasks(suite)}
        if all(n in known for n in names):
            return suite
    unknown = [n for n in names if not any(n in {t.name for t in suites.tasks(s)} for s in suites.suite_names())]
    if unknown:
        raise UserError(
            f"demo file(s) for unknown LIBERO task(s) {unknown[:3]}; file names must be "
            f"'<task name>{DEMO_SUFFIX}' with a task of one of {suites.suite_names()}"
        )
    raise UserError(
        f"the demo files belong to more than one suite; choose one with --suite ({', '.join(suites.suite_names())})"
    )


def select_sources(files: dict[str, Path], suite: str | None, selectors: list[str] | None) -> list[SourceTask]:
    """The selected tasks that have a demo file, in suite order; an empty selection is an error."""
    suite = suite or infer_suite(sorted(files))
    chosen = suites.select_tasks(suite, selectors)
    sources = [SourceTask(t, files[t.name], t.language) for t in chosen if t.name in files]
    if not sources:
        raise UserError(
            f"none of the {len(chosen)} selected task(s) of suite {suite!r} "
            f"(selectors: {selectors or 'all'}) has a demo file among {len(files)} file(s) found, "
            f"e.g. {sorted(files)[:3]}"
        )
    return sources


# ------------------------------------------------------------------------------------------------ reading demos


def _open(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise UserError(f"{path}: not a readable HDF5 file ({e})") from None


def read_instruction(f: h5py.File, path: Path, fallback: str) -> str:
    """``problem_info['language_instruction']`` of ``data`` (the BDDL ``:language`` line), ``fallback`` when absent.

    Kept as provenance only: training uses the benchmark's instruction of the task (``rdt.libero.suites``), the
    string evaluation conditions on; the BDDL line is often worded differently ("Pick the ..." vs "pick up the ...")."""
    raw = f["data"].attrs.get("problem_info")
    if raw is None:
        return fallback
    try:
        info = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: attribute data.problem_info is not valid JSON ({e})") from None
    instr = info.get("language_instruction") if isinstance(info, dict) else None
    if isinstance(instr, (list, tuple)):
        instr = " ".join(str(w) for w in instr)
    return str(instr).strip() if instr else fallback


def demo_keys(f: h5py.File, path: Path) -> list[str]:
    """``data/demo_<i>`` group names sorted by i (numerically)."""
    if "data" not in f or not isinstance(f["data"], h5py.Group):
        raise UserError(f"{path}: missing group 'data' (expected the robomimic layout data/demo_<i>)")
    keys = [k for k in f["data"] if _DEMO_KEY.match(k)]
    if not keys:
        raise UserError(f"{path}: group 'data' holds no 'demo_<i>' groups")
    return sorted(keys, key=lambda k: int(_DEMO_KEY.match(k).group(1)))


def _dataset(grp: h5py.Group, key: str, path: Path) -> h5py.Dataset:
    where = f"{grp.name}/{key}"
    if key not in grp:
        raise UserError(f"{path}: missing dataset {where} (official LIBERO demo layout, docs/formats.md §1)")
    ds = grp[key]
    if not isinstance(ds, h5py.Dataset):
        raise UserError(f"{path}: {where} is a group, expected a dataset")
    return ds


def _read(ds: h5py.Dataset, path: Path) -> np.ndarray:
    try:
        return ds[()]
    except OSError as e:
        raise UserError(f"{path}: cannot read {ds.name} (corrupt file? {e})") from None


#: median joint error (rad) below which a pairing convention matches a file; the official files' recorded states
#: come from the human demonstration and the observations from a replay, which may drift by a few 1e-3
PAIRING_TOLERANCE = 0.01
#: the matching convention's median error must be below this fraction of the other's (so a still robot, whose
#: states fit both, is reported instead of guessed)
PAIRING_MARGIN = 0.25


def detect_pairing(f: h5py.File, keys: list[str], path: Path) -> tuple[str, dict[str, float]]:
    """The file's observation/action convention, from its recorded joint positions and simulator states.

    ``obs/joint_states[j]`` equals the arm joints of ``states[j+1]`` when observations are recorded after the
    action (official LIBERO) and of ``states[j]`` when before it (OpenVLA's regenerated files). Steps 1..T-2 of
    every demo are compared (step 0 skipped: regenerated files copy ``states[0]`` from the original demo, whose
    start differs); the convention whose median error is below PAIRING_TOLERANCE and clearly below the other's
    wins. Returns ``(convention, {convention: median error})``; a file matching neither (or both) is a UserError
    naming it."""
    before, after = [], []
    for k in keys:
        grp = f["data"][k]
        joints = _read(_dataset(grp, "obs/joint_states", path), path)
        ds = _dataset(grp, "states", path)
        if ds.ndim != 2 or ds.shape[0] != joints.shape[0] or ds.shape[1] < mapping.SIM_STATE_ARM_JOINTS.stop:
            raise UserError(
                f"{path}: {grp.name}/states has shape {ds.shape}, expected ({joints.shape[0]},D) "
                f"flattened MuJoCo states [time, qpos, qvel] with D >= {mapping.SIM_STATE_ARM_JOINTS.stop}"
            )
        if joints.ndim != 2 or joints.shape[1] != 7:
            raise UserError(f"{path}: {grp.name}/obs/joint_states has shape {joints.shape}, expected (T,7)")
        q = _read(ds, path)[:, mapping.SIM_STATE_ARM_JOINTS]
        if len(q) < 3:
            continue
        before.append(np.abs(joints[1:-1] - q[1:-1]).max(axis=1))
        after.append(np.abs(joints[1:-1] - q[2:]).max(axis=1))
    if not before:
        raise UserError(f"{path}: demos too short (< 3 steps) to tell how observations pair with actions")
    errors = {
        mapping.OBS_BEFORE_ACTION: float(np.median(np.concatenate(before))),
        mapping.OBS_AFTER_ACTION: float(np.median(np.concatenate(after))),
    }
    best, other = sorted(errors, key=errors.get)
    described = (
        f"median |obs/joint_states[j] - states[j][1:8]| = {errors[mapping.OBS_BEFORE_ACTION]:.3g} rad, "
        f"|obs/joint_states[j] - states[j+1][1:8]| = {errors[mapping.OBS_AFTER_ACTION]:.3g} rad"
    )
    if errors[best] > PAIRING_TOLERANCE:
        raise UserError(
            f"{path}: the recorded joint positions match neither pairing convention ({described}; "
            f"expected one below {PAIRING_TOLERANCE}): obs/joint_states and states do not come from "
            "the same simulation, so observations cannot be paired with actions"
        )
    if errors[best] >= PAIRING_MARGIN * errors[other]:
        raise UserError(
            f"{path}: cannot tell whether observations are recorded before or after their actions "
            f"({described}; the robot barely moves); if you know, pass --pairing"
        )
    return best, errors


def demo_steps(f: h5py.File, key: str, path: Path, pairing: str, drop_noops: bool = False) -> tuple[int, int]:
    """``(training steps, dropped no-op steps)`` a demo gives under ``pairing`` (see read_demo)."""
    actions = _paired_actions(_read(_dataset(f["data"][key], "actions", path), path), pairing)
    dropped = int(mapping.noop_mask(actions).sum()) if drop_noops else 0
    return len(actions) - dropped, dropped


def _paired_actions(actions: np.ndarray, pairing: str) -> np.ndarray:
    """The actions that observations 0.. are paired with: ``actions[1:]`` when observations follow their action."""
    return actions[1:] if pairing == mapping.OBS_AFTER_ACTION else actions


def _read_low_dim(grp: h5py.Group, path: Path) -> dict[str, np.ndarray]:
    """The demo's low-dimensional arrays (actions, joint/gripper/eef observations) as float64, shapes checked and
    all of one length."""
    arrays: dict[str, np.ndarray] = {}
    length = None
    for name, tail in _LOW_DIM.items():
        ds = _dataset(grp, name, path)
        if ds.ndim != 1 + len(tail) or ds.shape[1:] != tail or not np.issubdtype(ds.dtype, np.number):
            raise UserError(
                f"{path}: {grp.name}/{name} has shape {ds.shape} dtype {ds.dtype}, "
                f"expected (T,{','.join(map(str, tail))}) numbers"
            )
        length = ds.shape[0] if length is None else length
        if ds.shape[0] != length:
            raise UserError(
                f"{path}: {grp.name}/{name} has {ds.shape[0]} steps, expected {length} (as {grp.name}/actions)"
            )
        arrays[name] = _read(ds, path).astype(np.float64)
    return arrays


def _read_cameras(grp: h5py.Group, path: Path, length: int) -> dict[str, np.ndarray]:
    """RDT camera slot -> the demo's upright frames (length, S, S, 3) uint8; every camera of one size."""
    images: dict[str, np.ndarray] = {}
    for slot, cam in mapping.CAMERAS.items():
        if cam is None:
            continue
        name = f"obs/{cam[0]}"
        ds = _dataset(grp, name, path)
        if (
            ds.ndim != 4
            or ds.shape[0] != length
            or ds.shape[3] != 3
            or ds.shape[1] != ds.shape[2]
            or ds.dtype != np.uint8
        ):
            raise UserError(
                f"{path}: {grp.name}/{name} has shape {ds.shape} dtype {ds.dtype}, "
                f"expected ({length},S,S,3) uint8 (square frames, one per step)"
            )
        images[slot] = mapping.upright(_read(ds, path))
    sizes = {im.shape[1] for im in images.values()}
    if len(sizes) != 1:
        raise UserError(f"{path}: {grp.name} cameras have different image sizes {sorted(sizes)}")
    return images


def read_demo(
    f: h5py.File,
    key: str,
    path: Path,
    pairing: str = mapping.OBS_AFTER_ACTION,
    drop_noops: bool = False,
    image_size: int | None = None,
) -> Episode:
    """Read and map one demo; every shape and dtype is checked against the official layout.

    ``pairing``: the file's convention (detect_pairing); ``drop_noops`` leaves out the steps whose action is a
    no-op (mapping.noop_mask); ``image_size`` resizes the frames (None keeps them)."""
    grp = f["data"][key]
    arrays = _read_low_dim(grp, path)
    images = _read_cameras(grp, path, len(arrays["actions"]))
    state = mapping.state_from_demo_obs(
        arrays["obs/joint_states"], arrays["obs/gripper_states"], arrays["obs/ee_pos"], arrays["obs/ee_ori"]
    )
    # obs[j] recorded AFTER actions[j] (official) is what the policy saw when it chose actions[j+1]: pair obs[t]
    # with actions[t+1] (one step fewer than the demo); recorded BEFORE it (regenerated), pair obs[t], actions[t]
    libero_action = _paired_actions(arrays["actions"], pairing)
    n = len(libero_action)
    keep = ~mapping.noop_mask(libero_action) if drop_noops else np.ones(n, dtype=bool)
    libero_action, state = libero_action[keep], state[:n][keep]
    images = {slot: frames[:n][keep] for slot, frames in images.items()}
    if image_size is not None:
        images = {slot: mapping.resize(frames, image_size) for slot, frames in images.items()}
    action = mapping.action_to_unified(libero_action).astype(np.float32)
    if not (np.isfinite(state).all() and np.isfinite(action).all()):
        raise UserError(f"{path}: {grp.name} holds non-finite values in its observations or actions")
    return Episode(state.astype(np.float32), action, libero_action, images, int(n - keep.sum()))


# ------------------------------------------------------------------------------------------------ writing


def _write_root_attrs(
    out: h5py.File, image_size: int, sources: list[SourceTask], suite: str, state_slots=mapping.STATE_SLOTS
) -> None:
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


def _write_provenance(
    out: h5py.File,
    sources: list[SourceTask],
    suite: str,
    source_kind: str,
    drop_noops: bool,
    dropped: int,
    dataset_id: str,
) -> None:
    """Root attrs written once every episode is in: what was converted, how, and the data's identity."""
    out.attrs["source"] = source_kind
    out.attrs["drop_noops"] = bool(drop_noops)
    out.attrs["dropped_noops"] = int(dropped)
    out.attrs["obs_conventions"] = json.dumps({str(s.path): s.pairing for s in sources})
    out.attrs["dataset_id"] = dataset_id
    out.attrs["created_by"] = json.dumps(
        {
            "rdt_version": rdt.__version__,
            "suite": suite,
            "tasks": [s.task.name for s in sources],
            "source": source_kind,
            "sources": [str(s.path) for s in sources],
            "dataset": dataset_id,
        }
    )


def _write_episode(out: h5py.File, index: int, ep: Episode, src: SourceTask, demo: str, digest=None) -> None:
    grp = out.create_group(f"episodes/{index:06d}")
    grp.attrs.update(
        task=src.task.name,
        suite=src.task.suite,
        instruction=src.instruction,
        source_instruction=src.source_instruction,
        source_file=str(src.path),
        source_demo=demo,
        num_steps=ep.state.shape[0],
        obs_convention=src.pairing,
        dropped_noops=ep.dropped_noops,
    )
    grp.create_dataset("state", data=ep.state)
    grp.create_dataset("action", data=ep.action)
    grp.create_dataset("libero_action", data=ep.libero_action)
    for slot, frames in ep.images.items():
        grp.create_dataset(f"images/{slot}", data=frames, chunks=(1,) + frames.shape[1:], **IMAGE_COMPRESSION)
    if digest is not None:  # the dataset's identity: what training reads, not the HDF5 bytes
        digest.update(f"{index}|{src.task.name}|{src.instruction}|".encode())
        for arr in (ep.state, ep.action, ep.libero_action, *(ep.images[k] for k in sorted(ep.images))):
            digest.update(np.ascontiguousarray(arr).tobytes())


#: set when an HDF5 write failed on a full or read-only disk: HDF5 then holds objects it cannot flush, and the
#: command line exits at once after reporting (freeing them at interpreter exit crashes)
HDF5_LEFT_BROKEN = False


@contextlib.contextmanager
def _quiet_hdf5_aftermath():
    """When HDF5 meets a full or read-only disk anyway (filled by another process after :func:`_check_space`),
    each of its objects fails again as it is freed ("Exception ignored in h5py...__dealloc__"); those repeats of
    the one error the command reports are not printed, and :data:`HDF5_LEFT_BROKEN` is set."""
    from rdt.utils.atomic import disk_error_line

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


def _check_counts(demos_per_task: int | None, min_steps: int) -> None:
    """``--demos-per-task`` (when given) and ``--min-steps`` are at least 1."""
    if demos_per_task is not None and demos_per_task < 1:
        raise UserError(f"--demos-per-task must be >= 1, got {demos_per_task}")
    if min_steps < 1:
        raise UserError(f"--min-steps must be >= 1, got {min_steps}")


def _new_summary() -> dict:
    """The conversion summary before any task is planned."""
    return {"tasks": {}, "episodes": 0, "steps": 0, "noops": 0}


def _task_entry(skipped: list[str], pairing: str) -> dict:
    """A task's summary entry once its demos are chosen; :func:`_write` counts its episodes in."""
    return {"episodes": 0, "steps": 0, "skipped": skipped, "noops": 0, "pairing": pairing}


def _file_pairing(f: h5py.File, keys: list[str], path: Path, pairing: str | None) -> str:
    """The file's observation/action pairing: ``pairing`` when given (--pairing), else detected; printed."""
    if pairing is not None:
        print(f"{path}: {pairing} (as given by --pairing, not detected)")
        return pairing
    detected, errors = detect_pairing(f, keys, path)
    print(
        f"{path}: {detected} (median joint error {errors[detected]:.2g} rad, other "
        f"convention {max(errors.values()):.2g})"
    )
    return detected


def _choose_demos(
    f: h5py.File, keys: list[str], src: SourceTask, demos_per_task: int | None, min_steps: int, drop_noops: bool
) -> tuple[list[str], list[str]]:
    """``(chosen, skipped)``: the first ``demos_per_task`` demos of ``keys`` (all when None) giving at least
    ``min_steps`` training steps, and the shorter ones met on the way (reported)."""
    chosen, skipped = [], []
    for k in keys:
        if demos_per_task is not None and len(chosen) == demos_per_task:
            break
        n, _ = demo_steps(f, k, src.path, src.pairing, drop_noops)
        (chosen if n >= min_steps else skipped).append(k)
        if n < min_steps:
            print(f"skipping {src.path}:data/{k}: {n} training steps < --min-steps {min_steps}")
    return chosen, skipped


def convert(
    inputs: list[str],
    out_path: str | Path,
    suite: str | None = None,
    selectors: list[str] | None = None,
    demos_per_task: int | None = None,
    min_steps: int = DEFAULT_MIN_STEPS,
    drop_noops: bool = False,
    image_size: int | None = None,
    pairing: str | None = None,
) -> dict:
    """Convert; ``pairing`` (mapping.OBS_CONVENTIONS) overrides the per-file detection. Returns the summary
    ``{"tasks": {task: {"episodes", "steps", "skipped", "noops", "pairing"}}, "episodes", "steps", "noops"}``.
    ``drop_noops`` leaves out no-op steps (counted in ``noops``); ``image_size`` resizes every frame to that size
    (None keeps the files' size, which must then be the same everywhere)."""
    _check_counts(demos_per_task, min_steps)
    if image_size is not None and image_size < 1:
        raise UserError(f"--image-size must be >= 1, got {image_size}")
    files = find_demo_files(inputs)
    sources = select_sources(files, suite, selectors)
    suite_name = sources[0].task.suite
    print(f"{suite_name}: {len(sources)} selected task(s) with a demo file ({len(files)} demo file(s) found)")
    # plan: which demos of which file (first N usable ones, numeric order); short ones are reported and skipped
    plan: list[tuple[SourceTask, list[str]]] = []
    summary = _new_summary()
    for src in sources:
        with _open(src.path) as f:
            keys = demo_keys(f, src.path)
            src.source_instruction = read_instruction(f, src.path, src.task.language)
            src.pairing = _file_pairing(f, keys, src.path, pairing)
            chosen, skipped = _choose_demos(f, keys, src, demos_per_task, min_steps, drop_noops)
        if demos_per_task is not None and len(chosen) < demos_per_task:
            print(f"warning: {src.path}: only {len(chosen)} usable demo(s), {demos_per_task} requested")
        plan.append((src, chosen))
        summary["tasks"][src.task.name] = _task_entry(skipped, src.pairing)
    return _write(
        plan,
        sources,
        suite_name,
        summary,
        out_path,
        min_steps,
        drop_noops,
        image_size,
        "official",
        lambda src, f, k: read_demo(f, k, src.path, src.pairing, drop_noops, image_size),
        _open,
    )


def _count_episode(summary: dict, task_name: str, ep: Episode) -> None:
    """Count a written episode into its task's and the overall totals of ``summary``."""
    n = ep.state.shape[0]
    task = summary["tasks"][task_name]
    task["episodes"] += 1
    task["steps"] += n
    task["noops"] += ep.dropped_noops
    summary["episodes"] += 1
    summary["steps"] += n
    summary["noops"] += ep.dropped_noops


def _write(
    plan,
    sources,
    suite_name,
    summary,
    out_path,
    min_steps,
    drop_noops,
    image_size,
    source_kind,
    read_episode,
    open_source,
    state_slots=mapping.STATE_SLOTS,
) -> dict:
    """Write the planned episodes (``read_episode(src, handle, key) -> Episode``, ``open_source(path)`` a context
    manager giving the handle) into ``out_path``; fills and returns ``summary``."""
    import hashlib

    total = sum(len(c) for _, c in plan)
    if total == 0:
        raise UserError(
            f"no usable demo in the {len(sources)} selected source(s) (all shorter than --min-steps {min_steps})"
        )
    size_seen = None
    index = 0
    digest = hashlib.sha256()
    with (
        atomic_path(out_path) as tmp,
        _quiet_hdf5_aftermath(),
        h5py.File(tmp, "w") as out,
        Progress(total, "convert", unit="demo", every=10.0) as progress,
    ):
        for src, keys in plan:
            with open_source(src.path) as f:
                for k in keys:
                    ep = read_episode(src, f, k)
                    size = next(iter(ep.images.values())).shape[1]
                    if size_seen is None:
                        size_seen = size
                        _write_root_attrs(out, size, sources, suite_name, state_slots)
                    elif size != size_seen:
                        raise UserError(
                            f"{src.path}: {k} has {size}x{size} frames, expected {size_seen}x"
                            f"{size_seen} like the demos converted before it (set --image-size to "
                            "resize every source to one size)"
                        )
                    _check_space(tmp, out_path, ep)
                    _write_episode(out, index, ep, src, k, digest)
                    index += 1
                    _count_episode(summary, src.task.name, ep)
                    progress.update(1, task=src.task.name[:40])
        summary["dataset_id"] = digest.hexdigest()[:16]
        _write_provenance(out, sources, suite_name, source_kind, drop_noops, summary["noops"], summary["dataset_id"])
    return summary


def print_summary(summary: dict, out_path: str | Path) -> None:
    width = max(len(t) for t in summary["tasks"])
    print(f"{'task':<{width}}  episodes  steps  skipped  no-ops dropped  pairing")
    for task, s in summary["tasks"].items():
        print(
            f"{task:<{width}}  {s['episodes']:>8}  {s['steps']:>5}  {len(s['skipped']):>7}  {s['noops']:>14}  "
            f"{s['pairing']}"
        )
    print(
        f"wrote {out_path}: {summary['episodes']} episodes, {summary['steps']} steps, "
        f"{len(summary['tasks'])} task(s), {summary['noops']} no-op steps dropped, dataset {summary['dataset_id']}"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # over 60 lines on purpose: one flat list of the command's flags in --help order; splitting it would scatter
    # the command line
    parser.add_argument(
        "--demos",
        nargs="+",
        required=True,
        metavar="DIR|FILE",
        help="LIBERO demo files '<task>_demo.hdf5' or folders holding them (searched recursively); "
        "with --source lerobot: the dataset folder (meta/, data/, videos/)",
    )
    parser.add_argument(
        "--source",
        choices=SOURCES,
        default="official",
        help="official: robomimic HDF5 demo files, official or regenerated (the observation/action "
        "pairing is detected per file); lerobot: a LeRobot v2.x LIBERO dataset (default: "
        "official)",
    )
    parser.add_argument("--out", required=True, help="training HDF5 to write (docs/formats.md §2)")
    parser.add_argument(
        "--suite",
        choices=suites.suite_names(),
        help="suite the tasks belong to (default: the first suite holding every task found)",
    )
    parser.add_argument(
        "--tasks",
        nargs="+",
        metavar="SEL",
        help="task names, indices in the suite, shell patterns such as 'KITCHEN_SCENE7_*', "
        "or 'all' (default: all tasks of the suite that have a demo file)",
    )
    parser.add_argument(
        "--demos-per-task",
        type=int,
        metavar="N",
        help="use the first N usable demos of each task, in demo_<i> order (default: all)",
    )
    parser.add_argument(
        "--min-steps",
        type=int,
        default=DEFAULT_MIN_STEPS,
        metavar="M",
        help=f"skip (and report) demos giving fewer than M training steps (default: {DEFAULT_MIN_STEPS})",
    )
    parser.add_argument(
        "--pairing",
        choices=mapping.OBS_CONVENTIONS,
        help="how the HDF5 files pair observations with actions, for files whose convention cannot "
        "be detected (default: detected per file from obs/joint_states and states)",
    )
    parser.add_argument(
        "--drop-noops",
        action="store_true",
        help="leave out no-op steps (zero motion, unchanged gripper; what OpenVLA/openpi drop), "
        "counted in the summary and the training file (default: keep every step)",
    )
    parser.add_argument(
        "--frames",
        choices=mapping.FRAME_CONVENTIONS,
        help="--source lerobot: how the dataset stores its frames (default: what its layout "
        "declares, upright for the published LIBERO datasets); HDF5 demo files are always "
        "raw renders (rotated)",
    )
    parser.add_argument(
        "--image-size",
        type=int,
        metavar="S",
        help="resize every frame to SxS (default: keep the sources' size, e.g. 128 official, 256 regenerated)",
    )


def main(args: argparse.Namespace) -> int:
    if args.source == "lerobot":
        from rdt.libero import lerobot

        summary = lerobot.convert(
            args.demos,
            args.out,
            args.suite,
            args.tasks,
            args.demos_per_task,
            args.min_steps,
            args.drop_noops,
            args.image_size,
            args.frames,
        )
    else:
        if args.frames is not None:
            raise UserError("--frames is for --source lerobot; LIBERO HDF5 demo files hold raw (rotated) renders")
        summary = convert(
            args.demos,
            args.out,
            args.suite,
            args.tasks,
            args.demos_per_task,
            args.min_steps,
            args.drop_noops,
            args.image_size,
            args.pairing,
        )
    print_summary(summary, args.out)
    return 0
