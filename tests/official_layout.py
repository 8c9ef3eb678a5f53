"""An independent writer of synthetic LIBERO demo files in the official robomimic layout.

Written from the layout description (LIBERO ``scripts/create_dataset.py``, reference LIBERO_FACTS.md §5) without
using the project's own demo writer, so that conversion is tested against a second, independent implementation
of the format. Values are synthetic but well formed: joint angles, finger positions in the Panda range, an
end-effector pose with axis-angle orientation, 7-dim OSC commands with the gripper at -1/+1, and 128x128 frames
in the raw (rotated) render orientation.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

MUJOCO_STATE_DIM = 79  # flattened [time, qpos, qvel]; any task-specific size is allowed by the format
ARM_QPOS = slice(1, 8)  # robosuite: qpos (after the time entry) starts with the Panda's 7 arm joints
FINGER_QPOS = slice(8, 10)  # then its 2 finger joints

#: how ``obs/*`` relate to ``states``/``actions``: "after" = obs[j] recorded after actions[j] while states[j] is
#: the state before it (upstream create_dataset.py); "before" = obs[j] and states[j] both before actions[j], with
#: states[0] copied from an original demo that started elsewhere (OpenVLA regenerate_libero_dataset.py);
#: "unrelated" = states that do not belong to the observations (a broken file)
RECORDINGS = ("after", "before", "unrelated")


def synthetic_demo(
    rng: np.random.Generator, steps: int, image_size: int = 128, recorded: str = "after"
) -> dict[str, np.ndarray]:
    """One demonstration's arrays, keyed by their path inside ``data/demo_<i>``.

    The underlying episode has steps+1 observations: observation k is what the robot shows after k actions (k=0:
    before the first). "after" records observations 1..T, "before" 0..T-1, so the two recordings of one seed
    are the same episode written both ways. ``states[j]`` is always the simulator state before ``actions[j]``."""
    if recorded not in RECORDINGS:
        raise ValueError(recorded)
    n = steps + 1
    t = np.linspace(0.0, 1.0, n)[:, None]
    pose = rng.uniform(-1.5, 1.5, (1, 7)) + 0.3 * np.sin(2 * np.pi * t + rng.uniform(0, 6, (1, 7)))
    close = np.zeros(n, dtype=bool)
    close[n // 3 : 2 * n // 3] = True  # grasp in the middle third
    finger = np.where(close, 0.005, 0.039) + rng.uniform(0, 1e-3, n)
    gripper_states = np.stack([finger, -finger], axis=1)  # (n,2) robot0_gripper_qpos
    ee_pos = np.array([0.1, 0.0, 1.0]) + 0.2 * np.concatenate([t, np.sin(3 * t), -t], axis=1)
    ee_ori = np.array([np.pi - 0.1, 0.05, 0.0]) + 0.1 * rng.standard_normal((n, 3))  # axis-angle (n,3)
    actions = np.concatenate([rng.uniform(-0.9, 0.9, (steps, 6)), np.where(close[1:], 1.0, -1.0)[:, None]], axis=1)
    yy, xx = np.mgrid[0:image_size, 0:image_size]
    frames = {}
    for key, phase in (("agentview_rgb", 0), ("eye_in_hand_rgb", 60)):
        base = np.stack([xx * 255 // image_size, yy * 255 // image_size, np.full_like(xx, 40 + phase)], -1)
        step_shift = (np.arange(n) * 3)[:, None, None, None]
        noise = rng.integers(0, 8, (n, image_size, image_size, 3))
        frames[key] = ((base[None] + step_shift + noise) % 256).astype(np.uint8)
    states = rng.standard_normal((steps, MUJOCO_STATE_DIM))
    original_start = rng.uniform(-0.05, 0.05, 7)
    if recorded != "unrelated":
        states[:, 0] = np.arange(steps) / 20.0  # time
        states[:, ARM_QPOS] = pose[:-1]  # the state BEFORE each action
        states[:, FINGER_QPOS] = gripper_states[:-1]
        if recorded == "before":  # states[0] copied from the original demo
            states[0, ARM_QPOS] += original_start
    rec = slice(0, steps) if recorded == "before" else slice(1, n)
    ee_states = np.concatenate([ee_pos, ee_ori], axis=1)[rec]
    eef_quat = np.tile([0.0, 1.0, 0.0, 0.0], (steps, 1))
    return {
        "actions": actions.astype(np.float64),
        "states": states,
        "robot_states": np.concatenate([gripper_states[rec], ee_pos[rec], eef_quat], axis=1),
        "rewards": np.eye(1, steps, steps - 1, dtype=np.uint8)[0],
        "dones": np.eye(1, steps, steps - 1, dtype=np.uint8)[0],
        "obs/agentview_rgb": frames["agentview_rgb"][rec],
        "obs/eye_in_hand_rgb": frames["eye_in_hand_rgb"][rec],
        "obs/gripper_states": gripper_states[rec],
        "obs/joint_states": pose[rec],
        "obs/ee_states": ee_states,
        "obs/ee_pos": ee_states[:, :3],
        "obs/ee_ori": ee_states[:, 3:],
    }


def write_demo_file(
    path: str | Path,
    task: str,
    instruction: str | None,
    steps: list[int],
    *,
    seed: int = 0,
    image_size: int = 128,
    drop: tuple[str, ...] = (),
    replace: dict[str, np.ndarray] | None = None,
    recorded: str = "after",
    noops: dict[int, list[int]] | None = None,
) -> Path:
    """Write ``<path>`` with one demo per entry of ``steps`` (its length), named demo_0, demo_1, ...

    ``instruction=None`` leaves ``language_instruction`` out of ``problem_info``. ``drop`` removes datasets of
    every demo (paths like ``"obs/ee_pos"``); ``replace`` overrides datasets of ``demo_0``. ``recorded``: see
    RECORDINGS. ``noops`` (demo index -> step indices) sets those actions to zero motion with the previous
    step's gripper command."""
    rng = np.random.default_rng(seed)
    path = Path(path)
    problem_info = {"problem_name": "libero_tabletop_manipulation", "domain_name": "robosuite"}
    if instruction is not None:
        problem_info["language_instruction"] = instruction
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["env_name"] = "Libero_Tabletop_Manipulation"
        data.attrs["problem_info"] = json.dumps(problem_info)
        data.attrs["macros_image_convention"] = "opengl"
        data.attrs["bddl_file_name"] = f"libero/bddl_files/{task}.bddl"
        data.attrs["bddl_file_content"] = "(define (problem LIBERO_Tabletop_Manipulation))"
        data.attrs["env_args"] = json.dumps(
            {
                "type": 1,
                "env_name": "Libero_Tabletop_Manipulation",
                "problem_name": "libero_tabletop_manipulation",
                "bddl_file": f"{task}.bddl",
                "env_kwargs": {},
            }
        )
        total = 0
        for i, n in enumerate(steps):
            arrays = synthetic_demo(rng, n, image_size, recorded)
            if noops and i in noops:
                _make_noops(arrays, noops[i])
            if i == 0 and replace:
                arrays.update(replace)
            grp = data.create_group(f"demo_{i}")
            for key, value in arrays.items():
                if key not in drop:
                    grp.create_dataset(key, data=value)
            grp.attrs["num_samples"] = n
            grp.attrs["model_file"] = "<mujoco model='base'/>"
            grp.attrs["init_state"] = arrays["states"][0]
            total += n
        data.attrs["num_demos"] = len(steps)
        data.attrs["total"] = total
    return path


def _make_noops(arrays: dict[str, np.ndarray], steps: list[int]) -> None:
    """Turn ``actions[j]`` for j in ``steps`` into no-ops: zero motion, gripper as at j-1 (or open at j=0)."""
    a = arrays["actions"]
    for j in sorted(steps):
        a[j, :6] = 0.0
        a[j, 6] = a[j - 1, 6] if j > 0 else -1.0
