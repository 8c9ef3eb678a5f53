"""The scripted expert and the demo writer on the real simulator: official layout, success, replay, images."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from robosuite.utils.transform_utils import quat2axisangle

from libero_helpers import EXPERT_EPISODES, EXPERT_TASK, expert_demo_file, expert_summary, run_rdt
from rdt import fingerprint
from rdt.errors import UserError
from rdt.libero import env as libero_env
from rdt.libero.demo_file import replay_start
from rdt.libero.expert_scene import task_goal
from rdt.libero.mapping import upright
from rdt.libero.suites import DEMO_CAMERA_SIZE, select_tasks
from rdt.utils.hashing import file_sha256, files_digest

pytestmark = pytest.mark.sim

DATA_ATTRS = {
    "env_name",
    "problem_info",
    "macros_image_convention",
    "bddl_file_name",
    "bddl_file_content",
    "env_args",
    "num_demos",
    "total",
}
OBS_KEYS = {"agentview_rgb", "eye_in_hand_rgb", "gripper_states", "joint_states", "ee_states", "ee_pos", "ee_ori"}
DEMO_KEYS = {"actions", "states", "robot_states", "rewards", "dones", "obs"}


def test_the_summary_records_the_code_and_a_digest_of_the_demos(expert_demo_dir):
    """What the workflow's early cutoff reads (rdt/plan/demos.py): the fingerprint of the code that made the demos
    and a digest of exactly the demo files, names and contents (not the summary with its timings)."""
    summary = expert_summary(expert_demo_dir)
    assert summary["code"] == fingerprint.fingerprint("rdt.libero.expert")
    [demo] = expert_demo_dir.glob("*_demo.hdf5")
    assert summary["content"] == files_digest(expert_demo_dir, "*_demo.hdf5") != files_digest(expert_demo_dir, "*")
    assert summary["content"] != file_sha256(demo) and summary["finished"].endswith("+00:00")


def test_official_layout(expert_demo_dir):
    summary = expert_summary(expert_demo_dir)
    entry = summary["tasks"][0]
    assert entry["task"] == EXPERT_TASK.name and entry["successes"] == EXPERT_EPISODES
    assert entry["success_rate"] == EXPERT_EPISODES / entry["attempts"]
    states_dim = libero_env.init_states(EXPERT_TASK).shape[1]
    with h5py.File(expert_demo_file(expert_demo_dir), "r") as f:
        assert list(f.keys()) == ["data"]
        data = f["data"]
        assert set(data.attrs) == DATA_ATTRS
        assert data.attrs["macros_image_convention"] == "opengl"
        assert data.attrs["num_demos"] == EXPERT_EPISODES
        problem = json.loads(data.attrs["problem_info"])
        assert set(problem) == {"problem_name", "domain_name", "language_instruction"}
        env_args = json.loads(data.attrs["env_args"])
        assert env_args["type"] == 1 and env_args["env_kwargs"]["camera_heights"] == DEMO_CAMERA_SIZE
        assert data.attrs["bddl_file_content"] == open(data.attrs["bddl_file_name"]).read()
        assert sorted(data.keys()) == [f"demo_{i}" for i in range(EXPERT_EPISODES)]
        total = 0
        for name, meta in zip(sorted(data.keys()), entry["demos"]):
            demo = data[name]
            assert meta["demo"] == name
            assert set(demo.keys()) == DEMO_KEYS and set(demo["obs"].keys()) == OBS_KEYS
            assert set(demo.attrs) == {"num_samples", "model_file", "init_state"}
            n = int(demo.attrs["num_samples"])
            total += n
            assert n == meta["num_samples"] > 20
            shapes = {
                "actions": (n, 7),
                "states": (n, states_dim),
                "robot_states": (n, 9),
                "rewards": (n,),
                "dones": (n,),
            }
            dtypes = {
                "actions": np.float64,
                "states": np.float64,
                "robot_states": np.float64,
                "rewards": np.uint8,
                "dones": np.uint8,
            }
            for key, shape in shapes.items():
                assert demo[key].shape == shape and demo[key].dtype == dtypes[key], key
            obs_shapes = {
                "agentview_rgb": (n, 128, 128, 3),
                "eye_in_hand_rgb": (n, 128, 128, 3),
                "gripper_states": (n, 2),
                "joint_states": (n, 7),
                "ee_states": (n, 6),
                "ee_pos": (n, 3),
                "ee_ori": (n, 3),
            }
            for key, shape in obs_shapes.items():
                assert demo["obs"][key].shape == shape, key
                want = np.uint8 if key.endswith("_rgb") else np.float64
                assert demo["obs"][key].dtype == want, key
            for key in ("rewards", "dones"):
                v = demo[key][()]
                assert v[-1] == 1 and not v[:-1].any()
            np.testing.assert_array_equal(demo.attrs["init_state"], demo["states"][0])
            assert "<mujoco" in demo.attrs["model_file"]
            rs, ee = demo["robot_states"][()], demo["obs/ee_states"][()]
            np.testing.assert_array_equal(rs[:, :2], demo["obs/gripper_states"][()])
            np.testing.assert_array_equal(rs[:, 2:5], ee[:, :3])
            np.testing.assert_allclose(ee[:, 3:], np.stack([quat2axisangle(q) for q in rs[:, 5:9]]))
            np.testing.assert_array_equal(ee[:, :3], demo["obs/ee_pos"][()])
            np.testing.assert_array_equal(ee[:, 3:], demo["obs/ee_ori"][()])
            assert np.abs(demo["actions"][()]).max() <= 1.0
        assert data.attrs["total"] == total


def test_replay_reproduces_states_and_succeeds(expert_demo_dir):
    """states[j] is the state BEFORE actions[j]; obs[j] the observation AFTER it; the last state succeeds."""
    meta = expert_summary(expert_demo_dir)["tasks"][0]["demos"]
    init_states = libero_env.init_states(EXPERT_TASK)
    env = libero_env.make_env(EXPERT_TASK, DEMO_CAMERA_SIZE, cameras=False)
    try:
        with h5py.File(expert_demo_file(expert_demo_dir), "r") as f:
            for m in meta:
                demo = f["data"][m["demo"]]
                states, actions = demo["states"][()], demo["actions"][()]
                joints = demo["obs/joint_states"][()]
                obs = replay_start(env, init_states[m["init_state"]], seed=m["seed"])
                assert "agentview_image" not in obs  # the camera-less env renders nothing per step
                for j, a in enumerate(actions):
                    np.testing.assert_allclose(env.get_sim_state(), states[j], atol=1e-9, err_msg=f"step {j}")
                    obs, _, done, _ = env.step(a)
                    np.testing.assert_allclose(obs["robot0_joint_pos"], joints[j], atol=1e-9)
                    assert done == (j == len(actions) - 1), f"success only at the last step, not {j}"
                assert env.check_success()
    finally:
        env.close()


def test_images_are_raw_render_orientation(expert_demo_dir):
    """obs[j] images equal a fresh render of the state after actions[j] (states[j + 1]), not the upright flip."""
    env = libero_env.make_env(EXPERT_TASK, DEMO_CAMERA_SIZE)
    try:
        with h5py.File(expert_demo_file(expert_demo_dir), "r") as f:
            demo = f["data/demo_0"]
            states = demo["states"][()]
            j = len(states) // 2
            stored = demo["obs/agentview_rgb"][j]
            stored_wrist = demo["obs/eye_in_hand_rgb"][j]
        env.seed(0)
        env.reset()
        obs = env.regenerate_obs_from_state(states[j + 1])
        fresh, fresh_wrist = obs["agentview_image"], obs["robot0_eye_in_hand_image"]
    finally:
        env.close()
    raw_err = np.abs(stored.astype(int) - fresh.astype(int)).mean()
    flip_err = np.abs(upright(stored).astype(int) - fresh.astype(int)).mean()
    assert raw_err < 1.0 < flip_err, (raw_err, flip_err)
    assert np.abs(stored_wrist.astype(int) - fresh_wrist.astype(int)).mean() < 1.0


def test_unsupported_goal_is_a_clear_error():
    task = select_tasks("libero_goal", ["open_the_middle_drawer_of_the_cabinet"])[0]
    with pytest.raises(UserError, match=r"open_the_middle_drawer_of_the_cabinet.*\(open "):
        task_goal(task)
    proc = run_rdt(
        "expert",
        "--suite",
        "libero_goal",
        "--tasks",
        "turn_on_the_stove",
        "--episodes",
        "1",
        "--out",
        "/nonexistent/never-created",
        timeout=300,
    )
    assert proc.returncode == 2
    assert "turn_on_the_stove" in proc.stderr and "(turnon flat_stove_1)" in proc.stderr
    assert "not supported" in proc.stderr


def test_goal_parsing_of_supported_tasks():
    assert task_goal(EXPERT_TASK).predicate == "in"
    on = task_goal(select_tasks("libero_spatial", ["0"])[0])
    assert (on.predicate, on.obj, on.target) == ("on", "akita_black_bowl_1", "plate_1")


def test_expert_rejects_bad_arguments():
    proc = run_rdt(
        "expert",
        "--suite",
        "libero_object",
        "--tasks",
        "0",
        "--episodes",
        "3",
        "--max-attempts",
        "2",
        "--out",
        "/nonexistent/never-created",
        timeout=120,
    )
    assert proc.returncode == 2 and "--max-attempts" in proc.stderr


def test_noise_injection_records_the_clean_labels_and_workers_do_not_change_the_demos(tmp_path):
    """DART: the env steps perturbed commands, the file stores the expert's clean ones. A demo written by a worker
    process (--workers 2) equals the same attempt run here: same executed noise (seeded by seed and init state),
    same labels; the labels differ from what was executed."""
    from rdt.libero.expert import run_expert

    out = tmp_path / "noisy"
    done = run_rdt(
        "expert", "--suite", EXPERT_TASK.suite, "--tasks", EXPERT_TASK.name, "--episodes", "1",
        "--action-noise", "0.2", "--workers", "2", "--camera-size", "32", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = expert_summary(out)
    assert summary["action_noise"] == 0.2
    demo = summary["tasks"][0]["demos"][0]
    env = libero_env.make_env(EXPERT_TASK, 32, cameras=False)
    try:
        init = libero_env.init_states(EXPERT_TASK)[demo["init_state"]]
        attempt = run_expert(env, task_goal(EXPERT_TASK), init, demo["init_state"], 0, EXPERT_TASK.max_steps, 0.2)
    finally:
        env.close()
    assert attempt.success and attempt.executed is not None
    with h5py.File(expert_demo_file(out), "r") as f:
        labels = f["data"][demo["demo"]]["actions"][()]
    np.testing.assert_array_equal(labels, attempt.actions[5:])  # the dropped no-ops are not in the file
    moved = np.abs(attempt.executed - attempt.actions)[5:, :6]
    assert moved.mean() > 0.05 and (np.abs(attempt.executed - attempt.actions)[:, 6] == 0).all()  # gripper untouched
