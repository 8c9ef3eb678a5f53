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

MUJOCO_STATE_DIM = 79          # flattened [time, qpos, qvel]; any task-specific size is allowed by the format


def synthetic_demo(rng: np.random.Generator, steps: int, image_size: int = 128) -> dict[str, np.ndarray]:
    """One demonstration's arrays, keyed by their path inside ``data/demo_<i>``."""
    t = np.linspace(0.0, 1.0, steps)[:, None]
    joint = rng.uniform(-1.5, 1.5, (1, 7)) + 0.3 * np.sin(2 * np.pi * t + rng.uniform(0, 6, (1, 7)))
    close = np.zeros(steps, dtype=bool)
    close[steps // 3: 2 * steps // 3] = True                      # grasp in the middle third
    finger = np.where(close, 0.005, 0.039) + rng.uniform(0, 1e-3, steps)
    gripper_states = np.stack([finger, -finger], axis=1)           # (T,2) robot0_gripper_qpos
    ee_pos = np.array([0.1, 0.0, 1.0]) + 0.2 * np.concatenate([t, np.sin(3 * t), -t], axis=1)
    ee_ori = np.array([np.pi - 0.1, 0.05, 0.0]) + 0.1 * rng.standard_normal((steps, 3)) # axis-angle (T,3)
    actions = np.concatenate([rng.uniform(-0.9, 0.9, (steps, 6)), np.where(close, 1.0, -1.0)[:, None]], axis=1)
    yy, xx = np.mgrid[0:image_size, 0:image_size]
    frames = {}
    for key, phase in (("agentview_rgb", 0), ("eye_in_hand_rgb", 60)):
        base = np.stack([xx * 255 // image_size, yy * 255 // image_size, np.full_like(xx, 40 + phase)], -1)
        step_shift = (np.arange(steps) * 3)[:, None, None, None]
        noise = rng.integers(0, 8, (steps, image_size, image_size, 3))
        frames[key] = ((base[None] + step_shift + noise) % 256).astype(np.uint8)
    states = rng.standard_normal((steps, MUJOCO_STATE_DIM))
    eef_quat = np.tile([0.0, 1.0, 0.0, 0.0], (steps, 1))
    return {
        "actions": actions.astype(np.float64),
        "states": states,
        "robot_states": np.concatenate([gripper_states, ee_pos, eef_quat], axis=1),
        "rewards": np.eye(1, steps, steps - 1, dtype=np.uint8)[0],
        "dones": np.eye(1, steps, steps - 1, dtype=np.uint8)[0],
        "obs/agentview_rgb": frames["agentview_rgb"],
        "obs/eye_in_hand_rgb": frames["eye_in_hand_rgb"],
        "obs/gripper_states": gripper_states,
        "obs/joint_states": joint,
        "obs/ee_states": np.concatenate([ee_pos, ee_ori], axis=1),
        "obs/ee_pos": ee_pos,
        "obs/ee_ori": ee_ori,
    }


def write_demo_file(path: str | Path, task: str, instruction: str | None, steps: list[int], *, seed: int = 0,
                    image_size: int = 128, drop: tuple[str, ...] = (),
                    replace: dict[str, np.ndarray] | None = None) -> Path:
    """Write ``<path>`` with one demo per entry of ``steps`` (its length), named demo_0, demo_1, ...

    ``instruction=None`` leaves ``language_instruction`` out of ``problem_info``. ``drop`` removes datasets of
    every demo (paths like ``"obs/ee_pos"``); ``replace`` overrides datasets of ``demo_0``."""
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
        data.attrs["env_args"] = json.dumps({"type": 1, "env_name": "Libero_Tabletop_Manipulation",
                                             "problem_name": "libero_tabletop_manipulation",
                                             "bddl_file": f"{task}.bddl", "env_kwargs": {}})
        total = 0
        for i, n in enumerate(steps):
            arrays = synthetic_demo(rng, n, image_size)
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
