"""Expert demonstrations from the real simulator, converted for training: frames are upright renders, states and
actions are the simulator's through the shared mapping, statistics match a direct computation."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from libero_helpers import EXPERT_TASK, expert_demo_file, run_rdt
from rdt.libero import env as libero_env
from rdt.libero import mapping
from rdt.libero.suites import DEMO_CAMERA_SIZE

pytestmark = pytest.mark.sim


@pytest.fixture(scope="module")
def converted(expert_demo_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("converted") / "data.h5"
    proc = run_rdt("convert", "--demos", str(expert_demo_dir), "--suite", EXPERT_TASK.suite, "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = out.with_name("dataset_stat.json")
    proc = run_rdt("stats", "--data", str(out), "--out", str(stats))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, stats


def test_converted_expert_demos_are_upright_renders_with_simulator_states(expert_demo_dir, converted):
    out, _ = converted
    with h5py.File(expert_demo_file(expert_demo_dir), "r") as src, h5py.File(out, "r") as f:
        assert len(f["episodes"]) == len(src["data"])
        ep = f["episodes/000000"]
        assert ep.attrs["task"] == EXPERT_TASK.name and ep.attrs["instruction"] == EXPERT_TASK.language
        demo = src[f"data/{ep.attrs['source_demo']}"]
        states, actions = demo["states"][()], demo["actions"][()]
        t = len(states) // 2  # converted step t = obs[t], the observation after actions[t]
        frame, wrist, state = ep["images/exterior"][t], ep["images/right_wrist"][t], ep["state"][t]
        unified_action = ep["action"][t]  # the command executed next: actions[t + 1]
        o = demo["obs"]
        from_file = mapping.state_from_demo_obs(
            o["joint_states"][t], o["gripper_states"][t], o["ee_pos"][t], o["ee_ori"][t]
        )
    env = libero_env.make_env(EXPERT_TASK, DEMO_CAMERA_SIZE)
    try:
        env.seed(0)
        env.reset()
        obs = env.regenerate_obs_from_state(states[t + 1])
    finally:
        env.close()
    render, render_wrist = obs["agentview_image"], obs["robot0_eye_in_hand_image"]
    upright_err = np.abs(frame.astype(int) - mapping.upright(render).astype(int)).mean()
    raw_err = np.abs(frame.astype(int) - render.astype(int)).mean()
    assert upright_err < 1.0 < raw_err, (upright_err, raw_err)
    assert np.abs(wrist.astype(int) - mapping.upright(render_wrist).astype(int)).mean() < 1.0
    np.testing.assert_allclose(state, from_file, atol=1e-6)
    # the simulator's own observation of that state: robosuite samples proprioception inside the 25 physics
    # substeps of a control step, so it lags the end-of-step state by up to a substep (~5e-4 rad here)
    np.testing.assert_allclose(state, mapping.state_from_env_obs(obs), atol=2e-3)
    # unified -> LIBERO recovers the recorded command (float32 storage)
    np.testing.assert_allclose(mapping.action_from_unified(unified_action), actions[t + 1], atol=1e-6)


def test_statistics_of_converted_expert_demos_match_numpy(converted):
    out, stats_path = converted
    with h5py.File(out, "r") as f:
        states = np.concatenate([f["episodes"][k]["state"][()] for k in f["episodes"]])
        actions = np.concatenate([f["episodes"][k]["action"][()] for k in f["episodes"]])
    entry = next(iter(json.loads(stats_path.read_text()).values()))
    np.testing.assert_allclose(entry["state_mean"], states.astype(np.float64).mean(0), atol=1e-6)
    np.testing.assert_allclose(entry["state_min"], states.min(0), atol=1e-7)
    np.testing.assert_allclose(entry["state_max"], states.max(0), atol=1e-7)
    np.testing.assert_allclose(entry["action_q99"], np.quantile(actions.astype(np.float64), 0.99, axis=0), atol=1e-5)
    assert entry["num_steps"] == len(states) and entry["episodes_per_task"] == {EXPERT_TASK.name: 2}
