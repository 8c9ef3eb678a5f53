"""Writer of LIBERO demo files in exactly the official layout (docs/formats.md section 1, upstream
``scripts/create_dataset.py``):

```
data            attrs env_name, problem_info (json), macros_image_convention ("opengl"), bddl_file_name,
                      bddl_file_content, env_args (json), num_demos, total
data/demo_<i>   attrs num_samples, model_file (MJCF xml), init_state (= states[0])
  actions (T,7) f64, states (T,D) f64, robot_states (T,9) f64, rewards (T,) u8, dones (T,) u8 (zeros, last 1)
  obs/agentview_rgb, obs/eye_in_hand_rgb (T,S,S,3) u8 raw render orientation (rotated 180 degrees)
  obs/gripper_states (T,2), obs/joint_states (T,7), obs/ee_states (T,6) = eef_pos + quat2axisangle(eef_quat),
  obs/ee_pos (T,3), obs/ee_ori (T,3)
```
Conventions copied from upstream: the first DEMO_DROP_FIRST_STEPS recorded steps are dropped; ``obs[j]`` is the
observation AFTER ``actions[j]`` while ``states[j]`` is the simulator state BEFORE it. The file is written under a
temporary name and renamed when closed.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from rdt.libero import env as libero_env
from rdt.libero import mapping
from rdt.libero.suites import CONTROL_FREQUENCY_HZ, DEMO_DROP_FIRST_STEPS, NOOP_ACTION, SETTLE_STEPS, Task
from rdt.utils.atomic import atomic_path

#: demo file image key -> env observation key, of the cameras LIBERO has (rdt.libero.mapping.CAMERAS)
IMAGE_KEYS = {cam[0]: cam[1] for cam in mapping.CAMERAS.values() if cam is not None}


def env_kwargs(task: Task, camera_size: int) -> dict:
    """The environment arguments recorded in ``env_args`` (what create_dataset.py records, JSON-serialisable)."""
    import robosuite

    return {
        "robots": ["Panda"],
        "controller_configs": robosuite.load_controller_config(default_controller="OSC_POSE"),
        "bddl_file_name": str(libero_env.bddl_path(task)),
        "has_renderer": False,
        "has_offscreen_renderer": True,
        "ignore_done": True,
        "use_camera_obs": True,
        "camera_depths": False,
        "camera_names": [mapping.EYE_IN_HAND, mapping.AGENTVIEW],  # in create_dataset.py's order
        "reward_shaping": True,
        "control_freq": CONTROL_FREQUENCY_HZ,
        "camera_heights": camera_size,
        "camera_widths": camera_size,
        "camera_segmentations": None,
    }


def replay_start(env, init_state: np.ndarray, seed: int = 0) -> dict:
    """Bring ``env`` to ``states[0]`` of a demo written by :class:`DemoWriter` from this init state and seed: the
    standard episode start plus the DEMO_DROP_FIRST_STEPS dropped steps, which the scripted expert fills with
    no-ops. Stepping the demo's ``actions`` from here reproduces its ``states`` exactly (same mujoco version)."""
    return libero_env.start_episode(env, init_state, seed=seed, settle_steps=SETTLE_STEPS + DEMO_DROP_FIRST_STEPS)


def record_episode(env, init_state: np.ndarray, seed: int, actions: np.ndarray) -> dict | None:
    """Replay ``actions`` (T0, 7; the first DEMO_DROP_FIRST_STEPS must be no-ops) in the camera env ``env`` from the
    standard episode start and return what a demo file stores per step (``{"steps": {...}, "model_xml": str}``;
    states BEFORE each action, observations AFTER it), or None when the env does not report success after the last
    action. Picklable, so a worker process can record and the writing process write."""
    actions = np.asarray(actions, dtype=np.float64)
    if actions.ndim != 2 or actions.shape[1] != 7 or len(actions) <= DEMO_DROP_FIRST_STEPS:
        raise ValueError(f"expected actions (T, 7) with T > {DEMO_DROP_FIRST_STEPS}, got {actions.shape}")
    if not np.array_equal(actions[:DEMO_DROP_FIRST_STEPS], np.tile(NOOP_ACTION, (DEMO_DROP_FIRST_STEPS, 1))):
        raise ValueError(
            f"the first {DEMO_DROP_FIRST_STEPS} actions (the dropped steps) must be no-ops "
            f"{NOOP_ACTION}, so that demos replay from replay_start()"
        )
    libero_env.start_episode(env, init_state, seed=seed)
    model_xml = env.env.sim.model.get_xml()
    steps: dict[str, list] = {k: [] for k in ("states", "gripper", "joints", "eef_pos", "eef_quat", *IMAGE_KEYS)}
    done = False
    for a in actions:
        steps["states"].append(env.get_sim_state().copy())  # state BEFORE the action
        obs, _, done, _ = env.step(a)  # observation AFTER it
        steps["gripper"].append(obs["robot0_gripper_qpos"])
        steps["joints"].append(obs["robot0_joint_pos"])
        steps["eef_pos"].append(obs["robot0_eef_pos"])
        steps["eef_quat"].append(obs["robot0_eef_quat"])
        for key, obs_key in IMAGE_KEYS.items():
            steps[key].append(obs[obs_key])
    if not (done and env.check_success()):
        return None
    return {"steps": steps, "model_xml": model_xml}


class DemoWriter:
    """``with DemoWriter(path, task, 128) as w: w.record(env, init_state, seed, actions)`` -> ``demo_0`` ...

    The file appears at ``path`` when the block ends without error and :meth:`discard` was not called."""

    def __init__(self, path: str | Path, task: Task, camera_size: int):
        self.path, self.task, self.camera_size = Path(path), task, camera_size
        self.num_demos, self.total, self._discard = 0, 0, False

    def __enter__(self) -> DemoWriter:
        lib = libero_env.import_libero()
        from robosuite import macros

        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        self._file = h5py.File(tmp, "w")
        bddl = libero_env.bddl_path(self.task)
        problem_info = lib.bddl_utils.get_problem_info(str(bddl))
        grp = self._file.create_group("data")
        grp.attrs["env_name"] = problem_info["problem_name"]
        grp.attrs["problem_info"] = json.dumps(problem_info)
        grp.attrs["macros_image_convention"] = macros.IMAGE_CONVENTION
        grp.attrs["bddl_file_name"] = str(bddl)
        grp.attrs["bddl_file_content"] = bddl.read_text()
        grp.attrs["env_args"] = json.dumps(
            {
                "type": 1,
                "env_name": problem_info["problem_name"],
                "problem_name": problem_info["problem_name"],
                "bddl_file": str(bddl),
                "env_kwargs": env_kwargs(self.task, self.camera_size),
            }
        )
        self._grp = grp
        return self

    def discard(self) -> None:
        """Do not create the file (e.g. no episode succeeded)."""
        self._discard = True

    def record(
        self, env, init_state: np.ndarray, seed: int, actions: np.ndarray, labels: np.ndarray | None = None
    ) -> str | None:
        """Replay ``actions`` (T0, 7; the first DEMO_DROP_FIRST_STEPS must be no-ops) in the camera env ``env``
        from the standard episode start (seed, init state, settle steps) and append the episode as ``demo_<i>`` if
        the env reports success after the last action. ``labels`` (T0, 7): the actions written to the file when
        they differ from the executed ones (noise injection: the expert's clean command for a perturbed step).

        Returns the demo's name, or None (nothing written) when the replay does not end in success."""
        recorded = record_episode(env, init_state, seed, actions)
        return None if recorded is None else self.write(recorded, actions if labels is None else labels)

    def write(self, recorded: dict, actions: np.ndarray) -> str:
        """Append an episode of :func:`record_episode` with ``actions`` (T0, 7, the dropped steps included) as
        ``demo_<i>``; returns its name."""
        actions = np.asarray(actions, dtype=np.float64)
        cut = {k: np.asarray(v[DEMO_DROP_FIRST_STEPS:]) for k, v in recorded["steps"].items()}
        self._write(cut, actions[DEMO_DROP_FIRST_STEPS:], recorded["model_xml"])
        return f"demo_{self.num_demos - 1}"

    def _write(self, s: dict[str, np.ndarray], actions: np.ndarray, model_xml: str) -> None:
        from robosuite.utils.transform_utils import quat2axisangle

        n = len(actions)
        ee_states = np.concatenate([s["eef_pos"], np.stack([quat2axisangle(q) for q in s["eef_quat"]])], axis=1)
        ends = np.zeros(n, dtype=np.uint8)
        ends[-1] = 1
        demo = self._grp.create_group(f"demo_{self.num_demos}")
        obs = demo.create_group("obs")
        obs.create_dataset("gripper_states", data=s["gripper"].astype(np.float64))  # (T, 2)
        obs.create_dataset("joint_states", data=s["joints"].astype(np.float64))  # (T, 7)
        obs.create_dataset("ee_states", data=ee_states.astype(np.float64))  # (T, 6)
        obs.create_dataset("ee_pos", data=ee_states[:, :3].astype(np.float64))  # (T, 3)
        obs.create_dataset("ee_ori", data=ee_states[:, 3:].astype(np.float64))  # (T, 3)
        for key in IMAGE_KEYS:
            obs.create_dataset(key, data=s[key].astype(np.uint8))  # (T, S, S, 3)
        demo.create_dataset("actions", data=actions)  # (T, 7)
        demo.create_dataset("states", data=s["states"].astype(np.float64))  # (T, D)
        robot_states = np.concatenate([s["gripper"], s["eef_pos"], s["eef_quat"]], axis=1)
        demo.create_dataset("robot_states", data=robot_states.astype(np.float64))  # (T, 9)
        demo.create_dataset("rewards", data=ends.copy())
        demo.create_dataset("dones", data=ends.copy())
        demo.attrs["num_samples"] = n
        demo.attrs["model_file"] = model_xml
        demo.attrs["init_state"] = s["states"][0].astype(np.float64)
        self.num_demos += 1
        self.total += n

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._grp.attrs["num_demos"] = self.num_demos
            self._grp.attrs["total"] = self.total
        finally:
            self._file.close()
        if exc_type is None and self._discard:
            exc_type, exc = _Discarded, _Discarded()  # atomic_path removes the temporary file on an exception
        self._atomic.__exit__(exc_type, exc, tb)


class _Discarded(Exception):
    """Signals atomic_path to drop the temporary file of a discarded DemoWriter."""
