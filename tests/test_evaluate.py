"""The evaluate command in the real LIBERO simulator with a tiny RDT checkpoint: episode bookkeeping over parallel
simulators and horizons, re-planning every H steps, resuming after a kill, videos, the summary, clear errors, and
an end-to-end replay of expert demonstrations through the evaluator's action path (inverse mapping, image flip,
start protocol)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from libero_helpers import EXPERT_SUITE, EXPERT_TASK_NAME, expert_demo_file, expert_summary
from rdt import cli
from rdt.evaluation.ledger import EPISODES_FILE, LOG_FILE, SUMMARY_FILE, read_episodes
from rdt.evaluation.run import evaluate
from rdt.evaluation.settings import Settings
from rdt.libero import mapping, suites
from rdt.libero.suites import DEMO_DROP_FIRST_STEPS, NOOP_ACTION
from rdt.report_stats import wilson as wilson_interval
from rdt.video import read_video

REPO = Path(__file__).resolve().parents[1]
SUITE = EXPERT_SUITE
TASKS = [EXPERT_TASK_NAME, "pick_up_the_ketchup_and_place_it_in_the_basket"]
CAMERA = 64
PIPELINE = {
    "text_encoder": "tiny",
    "vision_encoder": "tiny",
    "image_size": CAMERA,
    "control_frequency": 20,
    "action_space": "delta_eef",
    "step": 5,
    "run": "test",
}


def _save_tiny(folder: Path, config=None, pipeline=PIPELINE) -> Path:
    from rdt.model.checkpoint import save_checkpoint
    from rdt.model.config import RDTConfig
    from rdt.model.runner import build_runner

    config = config or RDTConfig.preset("tiny")
    runner = build_runner(config, seed=0)
    with torch.no_grad():  # the final layer starts at zero; give the policy non-trivial outputs
        for p in runner.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.05)
    return save_checkpoint(folder, runner, config, pipeline=pipeline)


@pytest.fixture(scope="module")
def base_files(tmp_path_factory):
    """A tiny checkpoint and tiny-T5 embeddings of the evaluated tasks' instructions."""
    from rdt.encoders import load_text_encoder
    from rdt.lang import encode_instructions

    root = tmp_path_factory.mktemp("eval_files")
    lang = root / "lang.safetensors"
    encode_instructions([t.language for t in suites.select_tasks(SUITE, TASKS)], load_text_encoder("tiny"), lang)
    return {"checkpoint": _save_tiny(root / "ckpt"), "lang": lang, "stats": root / "missing_dataset_stat.json"}


@pytest.fixture(scope="module")
def files(base_files, tmp_path_factory, expert_demo_dir):  # noqa: F811
    """``base_files`` plus the statistics of the expert demos (converted by the real pipeline)."""
    from rdt.data.stats import compute_stats
    from rdt.libero.convert import convert
    from rdt.utils.atomic import write_json

    root = tmp_path_factory.mktemp("eval_stats")
    convert([str(expert_demo_dir)], root / "data.h5")
    write_json(root / "dataset_stat.json", compute_stats(root / "data.h5"))
    return {**base_files, "stats": root / "dataset_stat.json"}


class CountingPolicy:
    """Wraps a policy; records each call's batch size and how many rows had no t-1 frame (episode starts)."""

    def __init__(self, inner):
        self.inner, self.rows, self.first_calls = inner, [], 0

    def act(self, lang, images, valid, states, state_mask, noise_seeds=None):
        self.rows.append(len(lang))
        assert valid.shape[1:] == (2, 3) and not valid[:, :, 2].any()  # no left wrist camera
        self.first_calls += int((~valid[:, 0, 0]).sum())
        return self.inner.act(lang, images, valid, states, state_mask, noise_seeds=noise_seeds)


def _lang_for(lang_file, tasks):
    from rdt.lang import LanguageTable

    table = LanguageTable.load(lang_file)
    return {t.name: table.get(t.language) for t in suites.select_tasks(SUITE, tasks)}


@pytest.mark.sim
def test_two_tasks_two_horizons_two_simulators(files, tmp_path):
    from rdt.data.stats import load_stats
    from rdt.evaluation.policy import Policy

    lang = _lang_for(files["lang"], TASKS)
    stats = load_stats(files["stats"])
    for horizon, max_steps in ((8, 24), (64, 66)):
        policy = CountingPolicy(Policy.from_checkpoint(files["checkpoint"], device="cpu", seed=0))
        settings = Settings(
            suite=SUITE,
            tasks=tuple(TASKS),
            episodes=2,
            horizon=horizon,
            max_steps=max_steps,
            envs=2,
            seed=0,
            camera_size=CAMERA,
            videos_per_task=1,
        )
        out = tmp_path / f"h{horizon}"
        summary = evaluate(
            policy, settings, out, lang, info={"checkpoint": "ckpt", "step": 5, "device": "cpu"}, stats=stats
        )
        records = read_episodes(out / EPISODES_FILE)
        assert sorted((r["task"], r["init_state"]) for r in records) == sorted((t, i) for t in TASKS for i in range(2))
        assert all(r["horizon"] == horizon and r["step"] == 5 and r["suite"] == SUITE for r in records)
        assert all(r["error"] is None and r["seconds"] > 0 for r in records)
        assert all(r["steps"] == max_steps for r in records if not r["success"])
        # receding horizon: one policy row per H executed steps per episode, batched across the simulators
        assert sum(policy.rows) == sum(math.ceil(r["steps"] / horizon) for r in records)
        assert policy.first_calls == len(records) and max(policy.rows) <= 2
        assert summary["policy_calls"] == len(policy.rows)
        overall = summary["overall"]
        assert overall["episodes"] == 4 and overall["errors"] == 0
        assert overall["successes"] == sum(r["success"] for r in records)
        assert overall["successes"] + overall["failures"] == 4
        assert [summary["tasks"][t]["episodes"] for t in TASKS] == [2, 2]
        assert summary["versions"]["mujoco"] == "3.3.2" and summary["versions"]["hf-libero"] == "0.1.4"
        assert summary["step"] == 5 and summary["settings"]["horizon"] == horizon
        assert summary["state_range"]["states_checked"] == sum(policy.rows)
        videos = sorted((out / "videos").iterdir())
        assert [v.name for v in videos] == sorted(
            f"{r['task']}__init0__{'success' if r['success'] else 'failure'}.mp4"
            for r in records
            if r["init_state"] == 0
        )
        frames = read_video(videos[0])
        steps0 = next(r["steps"] for r in records if videos[0].name.startswith(f"{r['task']}__init0__"))
        assert frames.shape == (steps0 + 1, CAMERA, 2 * CAMERA, 3) and frames.std() > 1


@pytest.mark.sim
def test_an_episode_is_the_same_on_one_or_two_simulators(files, tmp_path):
    """Outcomes do not depend on scheduling: with 2 simulators the episodes are batched and placed differently than
    with 1, yet each episode's frames are identical (own noise seeds, bit-identical episode starts)."""
    from rdt.evaluation.policy import Policy

    lang = _lang_for(files["lang"], TASKS[:1])
    frames = {}
    for envs in (1, 2):
        policy = Policy.from_checkpoint(files["checkpoint"], device="cpu", seed=0)
        settings = Settings(
            suite=SUITE,
            tasks=(TASKS[0],),
            episodes=3,
            horizon=8,
            max_steps=16,
            envs=envs,
            seed=0,
            camera_size=CAMERA,
            videos_per_task=3,
        )
        evaluate(policy, settings, tmp_path / f"envs{envs}", lang, info={"checkpoint": "ckpt", "step": 5})
        frames[envs] = {v.name: read_video(v) for v in sorted((tmp_path / f"envs{envs}" / "videos").iterdir())}
    assert len(frames[1]) == 3 and frames[1].keys() == frames[2].keys()
    for name, video in frames[1].items():
        assert video.shape == frames[2][name].shape and video.std() > 1
        np.testing.assert_array_equal(video, frames[2][name], err_msg=name)
    first = list(frames[1].values())
    assert not np.array_equal(first[0][-1], first[1][-1])  # different episodes really differ


def _cli_args(files, out, **extra):
    args = [
        "evaluate",
        "--checkpoint",
        str(files["checkpoint"]),
        "--lang",
        str(files["lang"]),
        "--stats",
        str(files["stats"]),
        "--suite",
        SUITE,
        "--out",
        str(out),
    ]
    for k, v in extra.items():
        args += [f"--{k.replace('_', '-')}"] + (v if isinstance(v, list) else [str(v)])
    return args


def _episode_log_inits(log_text: str) -> list[int]:
    return [int(line.split(" init ")[1].split(":")[0]) for line in log_text.splitlines() if " episode " in line]


@pytest.mark.sim
def test_killed_run_resumes_with_only_the_missing_episodes(files, tmp_path):
    out = tmp_path / "run"
    args = _cli_args(files, out, tasks=[TASKS[0]], episodes=3, horizon=8, max_steps=8, envs=1, videos_per_task=0)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "rdt", *args],
        cwd=REPO,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while not (out / EPISODES_FILE).is_file() or not (out / EPISODES_FILE).read_text().strip():
            assert proc.poll() is None, "evaluation ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the command and its simulator workers
        proc.wait()
    first = read_episodes(out / EPISODES_FILE)
    assert 1 <= len(first) < 3 and not (out / SUMMARY_FILE).exists()
    with open(out / EPISODES_FILE, "a") as f:
        f.write('{"task": "cut off by a ki')  # a write interrupted by the kill
    assert cli.main(args) == 0
    records = read_episodes(out / EPISODES_FILE)
    assert sorted(r["init_state"] for r in records) == [0, 1, 2]
    assert records[: len(first)] == first
    second_run = (out / LOG_FILE).read_text().split(f"evaluate {SUITE} horizon 8:")[-1]
    assert f"{len(first)} already in" in second_run
    assert sorted(_episode_log_inits(second_run)) == sorted({0, 1, 2} - {r["init_state"] for r in first})
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["overall"]["episodes"] == 3 and summary["episodes_this_run"] == 3 - len(first)
    # a finished folder: a rerun runs nothing and keeps the records
    assert cli.main(args) == 0
    assert read_episodes(out / EPISODES_FILE) == records


def test_clear_errors_before_any_simulator_starts(base_files, tmp_path, capsys):
    from rdt.model.config import RDTConfig

    def error(**extra):
        out = tmp_path / "never"
        base = dict(tasks=[TASKS[0]], episodes=1, horizon=8)
        assert cli.main(_cli_args(base_files, out, **{**base, **extra})) == 2
        assert not out.exists()
        return capsys.readouterr().err

    assert "between 1 and the predicted chunk length 64" in error(horizon=0)
    assert "between 1 and the predicted chunk length 64" in error(horizon=65)
    assert "init states" in error(episodes=51)
    assert "unknown LIBERO suite 'libero_99'" in error(suite="libero_99")
    assert f"no task of suite '{SUITE}' matches 'open_the_fridge'" in error(tasks=["open_the_fridge"])
    milk = "pick_up_the_milk_and_place_it_in_the_basket"
    assert "no embedding for instruction 'pick up the milk" in error(tasks=[milk])
    # a flag that contradicts the checkpoint's pipeline.json is refused before the language table is read
    assert "trained with text_encoder 'tiny' (pipeline.json), not 'other-t5'" in error(text_encoder="other-t5")
    tiny = RDTConfig.preset("tiny")
    bad_img = _save_tiny(
        tmp_path / "bad_img", tiny.replace(img_cond_len=48, img_pos_embed_config=[("image", (2, 3, -8))])
    )
    assert "48 image tokens" in error(checkpoint=str(bad_img))
    bad_lang = _save_tiny(tmp_path / "bad_lang", tiny.replace(lang_token_dim=64))
    assert "lang_token_dim=64" in error(checkpoint=str(bad_lang))


def test_wilson_interval():
    lo, hi = wilson_interval(45, 50)
    assert 0.78 < lo < 0.79 and 0.95 < hi < 0.96  # p = 0.9, n = 50
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert wilson_interval(0, 10)[1] == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(0, 0) is None


def test_video_round_trip_and_name(tmp_path):
    from rdt.video import video_name, write_video

    assert video_name("put_x", 3, True) == "put_x__init3__success.mp4"
    assert video_name("put_x", 0, False) == "put_x__init0__failure.mp4"
    ramp = np.linspace(0, 255, 64 * 128 * 3).reshape(64, 128, 3)
    frames = [np.roll(ramp, 8 * t, axis=1).astype(np.uint8) for t in range(6)]
    path = write_video(tmp_path / "v" / "a.mp4", frames, fps=20)
    assert [p.name for p in path.parent.iterdir()] == ["a.mp4"]  # no temporary file left
    back = read_video(path)
    assert back.shape == (6, 64, 128, 3)
    assert np.abs(back.astype(int) - np.stack(frames)).mean() < 8
    with pytest.raises(ValueError, match="even"):
        write_video(tmp_path / "odd.mp4", [np.zeros((5, 8, 3), np.uint8)], fps=20)


class ReplayPolicy:
    """Returns the expert's recorded actions (mapped to unified actions) from where each episode stands: the
    DEMO_DROP_FIRST_STEPS no-ops the demo file drops, then ``actions``. Episodes run one after another (one
    simulator), so the k-th episode start is init state k. At every call it also compares the evaluator's
    observation with the demo's recorded one for the same step: upright images and unified state."""

    def __init__(self, demos: dict[int, dict], horizon: int):
        self.demos, self.horizon = demos, horizon
        self.episode, self.pos, self.compared, self.image_diffs = -1, 0, 0, []

    def act(self, lang, images, valid, states, state_mask, noise_seeds=None):
        assert len(lang) == 1
        if not valid[0, 0, 0]:  # no t-1 frame: a new episode
            self.episode, self.pos = self.episode + 1, 0
        demo = self.demos.get(self.episode)
        noop = np.asarray(NOOP_ACTION, dtype=np.float64)
        if demo is None:
            chunk = np.tile(noop, (64, 1))
        else:
            j = self.pos - DEMO_DROP_FIRST_STEPS - 1  # demo obs[j] is the observation after action j
            if j >= 0:
                for slot, key in ((0, "agentview_rgb"), (1, "eye_in_hand_rgb")):
                    # equal up to rare software-rendering differences; a missing or wrong flip differs by ~50
                    diff = np.abs(images[0, 1, slot].astype(int) - mapping.upright(demo[key][j]).astype(int))
                    self.image_diffs.append(diff.mean())
                    assert diff.mean() < 0.5, (key, j, diff.mean(), diff.max())
                np.testing.assert_allclose(states[0], demo["states"][j], atol=1e-4)
                self.compared += 1
            plan = np.concatenate([np.tile(noop, (DEMO_DROP_FIRST_STEPS, 1)), demo["actions"]])[self.pos :]
            chunk = np.concatenate([plan, np.tile(noop, (64, 1))])[:64]
        self.pos += self.horizon
        return mapping.action_to_unified(chunk)[None].astype(np.float32)


@pytest.mark.sim
def test_replaying_expert_demos_through_the_evaluator_succeeds(expert_demo_dir, files, tmp_path):  # noqa: F811
    from rdt.data.stats import load_stats

    entry = expert_summary(expert_demo_dir)["tasks"][0]
    assert entry["task"] == EXPERT_TASK_NAME and all(d["seed"] == 0 for d in entry["demos"])
    demos = {}
    with h5py.File(expert_demo_file(expert_demo_dir), "r") as f:
        for d in entry["demos"][:1]:  # one demo keeps the test short; the start protocol is per episode
            g = f["data"][d["demo"]]
            obs = {
                k: g["obs"][k][()]
                for k in ("agentview_rgb", "eye_in_hand_rgb", "joint_states", "gripper_states", "ee_pos", "ee_ori")
            }
            demos[d["init_state"]] = {
                "actions": g["actions"][()],
                "agentview_rgb": obs["agentview_rgb"],
                "eye_in_hand_rgb": obs["eye_in_hand_rgb"],
                "states": mapping.state_from_demo_obs(
                    obs["joint_states"], obs["gripper_states"], obs["ee_pos"], obs["ee_ori"]
                ),
            }
    horizon = 16
    policy = ReplayPolicy(demos, horizon)
    longest = max(len(d["actions"]) for d in demos.values()) + DEMO_DROP_FIRST_STEPS
    settings = Settings(
        suite=SUITE,
        tasks=(EXPERT_TASK_NAME,),
        episodes=max(demos) + 1,
        horizon=horizon,
        max_steps=longest + 8,
        envs=1,
        seed=0,
        camera_size=suites.DEMO_CAMERA_SIZE,
        videos_per_task=1,
    )
    summary = evaluate(
        policy, settings, tmp_path / "replay", {EXPERT_TASK_NAME: torch.zeros(1, 32)}, stats=load_stats(files["stats"])
    )
    records = {r["init_state"]: r for r in read_episodes(tmp_path / "replay" / EPISODES_FILE)}
    for init, demo in demos.items():
        assert records[init]["success"], records[init]
        # success arrives exactly with the demo's last action, as when the expert recorded it
        assert records[init]["steps"] == DEMO_DROP_FIRST_STEPS + len(demo["actions"])
    assert policy.compared >= sum(len(d["actions"]) // horizon - 1 for d in demos.values())
    # the demos' own states made the statistics: none of them is far outside the training range
    assert summary["state_range"]["states_far_outside"] == 0
    if 0 in demos:
        assert (tmp_path / "replay" / "videos" / f"{EXPERT_TASK_NAME}__init0__success.mp4").is_file()


def test_previous_records_keep_finished_episodes_retry_errors_and_keep_other_keys_in_the_ledger(tmp_path):
    from rdt.evaluation.ledger import outcome_key, previous_records
    from rdt.evaluation.run import plan_jobs

    settings = Settings(
        suite=SUITE,
        tasks=(TASKS[0],),
        episodes=3,
        horizon=8,
        max_steps=10,
        envs=1,
        seed=0,
        camera_size=CAMERA,
        videos_per_task=2,
    )
    info = {"checkpoint": "/ckpt", "step": 5, "weights": "ema"}
    key = outcome_key(settings, info)
    base = {"task": TASKS[0], "suite": SUITE, "horizon": 8, "step": 5, "steps": 10, "seconds": 1.0, "key": key}
    ok = {**base, "init_state": 0, "success": True, "error": None}
    crashed = {**base, "init_state": 1, "success": False, "error": "simulator worker 0 died (exit code -9)"}
    (tmp_path / EPISODES_FILE).write_text(json.dumps(ok) + "\n" + json.dumps(crashed) + "\n" + '{"task": "pick')
    kept = previous_records(tmp_path, key)
    assert kept == [ok] and read_episodes(tmp_path / EPISODES_FILE) == [ok, crashed]  # the error runs again
    # the cut line is removed (the file rewritten with the complete records), so appends start on a line of their own
    assert (tmp_path / EPISODES_FILE).read_text() == json.dumps(ok) + "\n" + json.dumps(crashed) + "\n"
    jobs = plan_jobs(suites.select_tasks(SUITE, [TASKS[0]]), 3, 2, {(TASKS[0], 0)})
    assert [(j.init_state, j.record_video) for j in jobs] == [(1, True), (2, False)]
    # another checkpoint step, max_steps or seed makes a different key: the old records are not used, but they stay
    # in the ledger (a narrower or other request never deletes finished work) and count again under their own key
    for changed_settings, changed_info in (
        (settings, {**info, "step": 6}),
        (Settings(**{**asdict(settings), "max_steps": 20}), info),
        (Settings(**{**asdict(settings), "seed": 1}), info),
    ):
        other = outcome_key(changed_settings, changed_info)
        assert other != key
        (tmp_path / EPISODES_FILE).write_text(json.dumps(ok) + "\n")
        assert previous_records(tmp_path, other) == []
        assert read_episodes(tmp_path / EPISODES_FILE) == [ok] and previous_records(tmp_path, key) == [ok]
    # settings that do not decide outcomes (parallel simulators, videos) keep the key
    assert outcome_key(Settings(**{**asdict(settings), "envs": 4, "videos_per_task": 0}), info) == key
