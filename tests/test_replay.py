"""Open-loop replay of demos (rdt/replay.py): the nearest demo by init state, the commands it plays (dropped no-ops,
the demo, holds to the step limit), the evaluator's record layout with horizon 0, and on the real simulator: a demo
replayed from its own init state succeeds exactly when the expert's did."""

from __future__ import annotations

import json
from functools import partial

import h5py
import numpy as np
import pytest

from rdt.errors import UserError
from rdt.evaluation.ledger import EPISODES_FILE, SUMMARY_FILE, read_episodes
from rdt.evaluation.settings import Settings
from rdt.libero import suites
from rdt.replay import PLAN_FILE, ReplayDemo, make_replay_planner, nearest, replay, replay_commands
from test_workers import ScriptedSim

TASK = suites.tasks("libero_goal")[0]


def demo(name, start, n=5, gripper=1.0, sign=1.0):
    actions = np.zeros((n, 7))
    actions[:, 0] = sign * np.arange(1, n + 1)  # x commands 1..n mark the step
    actions[:, 6] = gripper
    return ReplayDemo(name, np.asarray(start, dtype=np.float64), actions)


def test_nearest_ignores_the_simulation_time_and_checks_the_state_size():
    demos = [demo("demo_0", [0.75, 0.0, 0.0]), demo("demo_1", [0.75, 1.0, 1.0])]
    # the time entry (0 in an init state, 0.75 after the settle steps) must not decide
    assert nearest(demos, np.array([0.0, 0.9, 1.1]), "t") == (1, pytest.approx(np.hypot(0.1, 0.1)))
    assert nearest(demos, np.array([5.0, 0.1, 0.0]), "t")[0] == 0
    with pytest.raises(UserError, match="shape"):
        nearest(demos, np.zeros(5), "task x")


def test_replay_commands_play_the_dropped_noops_the_demo_then_hold():
    d = demo("demo_0", [0.0], n=4, gripper=1.0)
    cmds = replay_commands(d, 12)
    drop = suites.DEMO_DROP_FIRST_STEPS
    assert cmds.shape == (12, 7)
    np.testing.assert_array_equal(cmds[:drop], np.tile(suites.NOOP_ACTION, (drop, 1)))
    np.testing.assert_array_equal(cmds[drop : drop + 4, 0], [1, 2, 3, 4])
    hold = cmds[drop + 4 :]
    assert (hold[:, :6] == 0).all() and (hold[:, 6] == 1.0).all()  # no motion, the gripper stays closed
    assert len(replay_commands(d, 3)) == 3  # the step limit cuts the demo


def test_planner_gives_each_episode_its_plan_once():
    from rdt.libero.workers import Job

    d0, d1 = demo("demo_0", [0.0], n=2), demo("demo_1", [0.0], n=3)
    plan = make_replay_planner({(TASK.name, 0): d0, (TASK.name, 1): d1}, max_steps=10)
    j0, j1 = Job(TASK, 0), Job(TASK, 1)
    out = plan([(j0, None), (j1, None)])
    assert [len(c) for c in out] == [10, 10] and out[1][suites.DEMO_DROP_FIRST_STEPS + 2, 0] == 3
    with pytest.raises(RuntimeError, match="twice"):
        plan([(j0, None)])


class CountingSim(ScriptedSim):
    """Succeeds when the x commands received so far sum to ``target`` (a replay of the right demo); observations are
    the scripted simulator's."""

    def __init__(self, target: float):
        super().__init__(never_succeed=True)
        self.target = target

    def start(self, task, init_state, seed):
        self.total = 0.0
        return super().start(task, init_state, seed)

    def step(self, action):
        self.total += float(action[0])
        obs, _ = super().step(action)
        return obs, abs(self.total - self.target) < 1e-9


def test_replay_writes_evaluation_records_with_horizon_zero_and_resumes(tmp_path, monkeypatch):
    from rdt.libero import env as libero_env

    # init states 0..3 of a task of 4 dims; demo_0 starts near init states 0 and 1, demo_1 near 2 and 3
    inits = np.array([[0, 0, 0, 0], [0, 0.1, 0, 0], [0, 5, 5, 5], [0, 5.1, 5, 5]], dtype=np.float64)
    monkeypatch.setattr(libero_env, "init_states", lambda task: inits)
    demos = {TASK.name: [demo("demo_0", [0.75, 0, 0, 0], n=3), demo("demo_1", [0.75, 5, 5, 5], n=4, sign=-1.0)]}
    settings = Settings(TASK.suite, (TASK.name,), 4, 0, 30, 2, 0, 8, 0)
    # the simulator succeeds only on demo_0's full replay (1+2+3 = 6): init states 0 and 1
    summary = replay(demos, settings, tmp_path, sim_factory=partial(CountingSim, 6.0))
    records = {r["init_state"]: r for r in read_episodes(tmp_path / EPISODES_FILE)}
    assert [records[i]["success"] for i in range(4)] == [True, True, False, False]
    assert {r["horizon"] for r in records.values()} == {0} and records[0]["steps"] == suites.DEMO_DROP_FIRST_STEPS + 3
    assert records[2]["steps"] == 30  # a failed replay holds until the step limit
    assert summary["overall"]["successes"] == 2 and summary["info"]["kind"] == "replay"
    chosen = json.loads((tmp_path / PLAN_FILE).read_text())["episodes"]
    assert [c["demo"] for c in chosen] == ["demo_0", "demo_0", "demo_1", "demo_1"]
    # a second call finds every episode finished: nothing runs again
    again = replay(demos, settings, tmp_path, sim_factory=partial(CountingSim, 6.0))
    assert again["episodes_this_run"] == 0 and again["episodes_from_earlier_runs"] == 4
    # other demos (another identity): every episode runs again
    other = {TASK.name: [demo("demo_0", [0.75, 0, 0, 0], n=2)]}
    third = replay(other, settings, tmp_path, sim_factory=partial(CountingSim, 6.0))
    assert third["episodes_this_run"] == 4 and third["overall"]["successes"] == 0
    assert json.loads((tmp_path / SUMMARY_FILE).read_text())["overall"]["successes"] == 0


@pytest.mark.sim
def test_replay_of_expert_demos_from_their_own_init_states_succeeds(expert_demo_dir, tmp_path):
    """On the real simulator: each demo replayed from the init state it was made from succeeds at the step the expert
    succeeded (the nearest demo is its own), through `python -m rdt replay`."""
    from libero_helpers import EXPERT_SUITE, EXPERT_TASK_NAME, expert_summary, run_rdt

    made = expert_summary(expert_demo_dir)["tasks"][0]["demos"]
    first = min(d["init_state"] for d in made)
    assert first == 0, "the fixture's demos come from init states 0.."
    n = len(made)
    done = run_rdt(
        "replay", "--demos", str(expert_demo_dir), "--suite", EXPERT_SUITE, "--tasks", EXPERT_TASK_NAME,
        "--episodes", str(n), "--max-steps", "300", "--videos-per-task", "0", "--out", str(tmp_path / "r"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    records = {r["init_state"]: r for r in read_episodes(tmp_path / "r" / EPISODES_FILE)}
    chosen = {c["init_state"]: c for c in json.loads((tmp_path / "r" / PLAN_FILE).read_text())["episodes"]}
    with h5py.File(expert_demo_dir / f"{EXPERT_TASK_NAME}_demo.hdf5", "r") as f:
        for d in made:
            i = d["init_state"]
            assert chosen[i]["demo"] == d["demo"], chosen[i]  # its own demo is the nearest (settling moves ~0.1)
            assert records[i]["success"], records[i]
            assert records[i]["steps"] == suites.DEMO_DROP_FIRST_STEPS + len(f["data"][d["demo"]]["actions"])


def test_two_evaluations_cannot_write_into_one_folder(tmp_path, monkeypatch):
    """The evaluator holds out/.evaluate.lock: a second evaluation (or replay) of the same folder, e.g. a stray
    second controller, is refused naming the holder instead of interleaving records (issue 20)."""
    from rdt.evaluation.ledger import LOCK_FILE
    from rdt.libero import env as libero_env
    from rdt.utils.files import folder_lock

    monkeypatch.setattr(libero_env, "init_states", lambda task: np.zeros((4, 4)))
    demos = {TASK.name: [demo("demo_0", [0.75, 0, 0, 0], n=3)]}
    settings = Settings(TASK.suite, (TASK.name,), 2, 0, 10, 1, 0, 8, 0)
    with folder_lock(tmp_path, LOCK_FILE, "evaluating into this folder"):
        with pytest.raises(UserError, match=r"another process is evaluating into this folder \(pid"):
            replay(demos, settings, tmp_path, sim_factory=partial(CountingSim, 6.0))
    assert not (tmp_path / EPISODES_FILE).exists()
    assert replay(demos, settings, tmp_path, sim_factory=partial(CountingSim, 6.0))["overall"]["successes"] == 2


def test_a_narrower_request_keeps_finished_episodes_and_more_videos_replay_only_those(tmp_path, monkeypatch):
    """Issue 20: evaluating tasks A and B, then only A, kept A's records and threw B's away (B ran again when asked
    for again). Now the ledger keeps B and reuses it; raising videos_per_task plays just the episodes that need one."""
    from rdt.libero import env as libero_env

    monkeypatch.setattr(libero_env, "init_states", lambda task: np.zeros((4, 4)))
    a, b = suites.tasks("libero_goal")[:2]
    demos = {t.name: [demo("demo_0", [0.75, 0, 0, 0], n=3)] for t in (a, b)}
    sim = partial(CountingSim, 6.0)
    both = Settings(a.suite, (a.name, b.name), 3, 0, 10, 2, 0, 8, 0)
    assert replay(demos, both, tmp_path, sim_factory=sim)["episodes_this_run"] == 6
    only_a = Settings(a.suite, (a.name,), 3, 0, 10, 2, 0, 8, 0)
    narrow = replay(demos, only_a, tmp_path, sim_factory=sim)
    assert narrow["episodes_this_run"] == 0 and narrow["overall"]["episodes"] == 3
    assert len(read_episodes(tmp_path / EPISODES_FILE)) == 6  # B's records are still there
    again = replay(demos, both, tmp_path, sim_factory=sim)
    assert again["episodes_this_run"] == 0 and again["overall"]["successes"] == 6
    # videos: none were asked for; asking for 2 per task plays init states 0 and 1 of each task again, only those
    more = replay(demos, Settings(a.suite, (a.name, b.name), 3, 0, 10, 2, 0, 8, 2), tmp_path, sim_factory=sim)
    assert more["episodes_this_run"] == 4 and more["overall"] == again["overall"]
    assert len(list((tmp_path / "videos").glob("*.mp4"))) == 4
    final = replay(demos, Settings(a.suite, (a.name, b.name), 3, 0, 10, 2, 0, 8, 2), tmp_path, sim_factory=sim)
    assert final["episodes_this_run"] == 0
