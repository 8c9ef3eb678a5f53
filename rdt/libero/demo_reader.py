"""Reading one demo of a LIBERO demo file (robomimic layout, docs/formats.md §1: official, regenerated or made by
`expert`) into training arrays.

:func:`read_demo` checks every shape and dtype against the official layout, maps state and action into RDT's
128-dim unified vectors (rdt.libero.mapping) and turns the frames upright. How a file pairs observations with
actions is detected per file (:func:`detect_pairing`): official files record each observation after its action
(observation j is paired with action j+1: a demo of T steps gives T-1 training steps), regenerated files (OpenVLA)
before it (T steps). No-op steps are dropped when asked (``drop_noops``). Bad files give an error naming the file,
the key and what was expected.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from rdt.data.writer import Episode
from rdt.errors import UserError
from rdt.libero import mapping

# demo dataset -> (trailing shape, expected kind); "T" is the demo length, "S" the image size.
_LOW_DIM = {
    "actions": (7,),
    "obs/joint_states": (7,),
    "obs/gripper_states": (2,),
    "obs/ee_pos": (3,),
    "obs/ee_ori": (3,),
}


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
