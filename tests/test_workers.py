"""The episode scheduler and worker processes (real spawn-ed processes, a scripted stand-in for the simulator whose
episodes end at different, known times): every (task, init state) job runs exactly once, on the right worker state,
re-planning every H steps; crashed simulators become error records and their workers are restarted."""

from __future__ import annotations

import os
import time
from functools import partial

import numpy as np
import pytest

from rdt import statevec
from rdt.libero import suites
from rdt.libero.workers import Job, WorkerPool, camera_images, run_jobs, video_frame

TASKS = suites.tasks("libero_goal")[:2]
J_TASK, J_INIT, J_STEP = statevec.indices(["right_arm_joint_0_pos", "right_arm_joint_1_pos", "right_arm_joint_2_pos"])


def episode_length(task_index: int, init_state: int) -> int:
    """Steps until the scripted success check fires: uneven on purpose (3..15)."""
    return 3 + (7 * init_state + 5 * task_index) % 13


class ScriptedSim:
    """Stands in for LIBERO: joint positions carry (task index, init state, step); success after
    ``episode_length`` steps unless ``never_succeed``; ``crash`` maps init state -> 'exit' (process dies) or
    'raise' at step 2."""

    def __init__(self, never_succeed: bool = False, crash: dict | None = None, size: int = 8, slow: dict | None = None):
        self.never_succeed, self.crash, self.size, self.slow = never_succeed, crash or {}, size, slow or {}

    def start(self, task, init_state, seed):
        self.task, self.init, self.t = task, init_state, 0
        return self._obs()

    def step(self, action):
        assert np.asarray(action).shape == (7,)
        time.sleep(self.slow.get(self.init, 0.0))
        self.t += 1
        mode = self.crash.get(self.init)
        if self.t == 2 and mode == "exit":
            os._exit(3)
        if self.t == 2 and mode == "raise":
            raise RuntimeError(f"scripted simulator failure at init {self.init}")
        done = not self.never_succeed and self.t >= episode_length(self.task.index, self.init)
        return self._obs(), done

    def _obs(self):
        joints = np.zeros(7)
        joints[:3] = self.task.index, self.init, self.t
        img = np.full((self.size, self.size, 3), self.t % 256, dtype=np.uint8)
        img[0, 0] = 255  # marks the raw top-left corner: upright moves it to the bottom-right
        return {
            "robot0_joint_pos": joints,
            "robot0_gripper_qpos": np.array([0.04, -0.04]),
            "robot0_eef_pos": np.zeros(3),
            "robot0_eef_quat": np.array([0.0, 0.0, 0.0, 1.0]),
            "agentview_image": img,
            "robot0_eye_in_hand_image": img.copy(),
        }

    def close(self):
        pass


def _run(sim_factory, jobs, horizon, max_steps, workers, warm=False):
    results, calls = [], []

    def plan(ready):
        calls.append(sorted(job.init_state for job, _ in ready))
        out = []
        for job, obs in ready:
            # each observation belongs to its own job and arrives after a multiple of H steps
            assert obs.state[J_TASK] == job.task.index and obs.state[J_INIT] == job.init_state
            assert obs.state[J_STEP] % horizon == 0
            assert obs.images.shape == (2, 8, 8, 3) and obs.images[0, -1, -1, 0] == 255
            assert (obs.prev_images is None) == (obs.state[J_STEP] == 0)
            out.append(np.zeros((64, 7)))
        return out

    with WorkerPool(workers, sim_factory) as pool:
        for i in range(workers if warm else 0):  # every worker process up before the clock matters
            pool.send(i, "start", (Job(TASKS[1], 49), 0))
            pool.recv(i)
        run_jobs(pool, jobs, plan, horizon, max_steps, seed=0, on_result=results.append)
        restarts = pool.restarts
    return results, calls, restarts


def test_every_job_runs_exactly_once_when_episodes_end_at_different_times():
    jobs = [Job(t, i) for t in TASKS for i in range(7)]
    results, calls, _ = _run(ScriptedSim, jobs, horizon=2, max_steps=40, workers=3)
    assert sorted((r.job.task.name, r.job.init_state) for r in results) == sorted(
        (j.task.name, j.init_state) for j in jobs
    )
    for r in results:
        assert r.success and r.error is None
        assert r.steps == episode_length(r.job.task.index, r.job.init_state)  # stops at the success check
    assert max(map(len, calls)) <= 3 and sum(map(len, calls)) == sum(-(-r.steps // 2) for r in results)


def test_max_steps_stop_and_replanning_every_h_steps():
    jobs = [Job(TASKS[0], i) for i in range(3)]
    results, calls, _ = _run(partial(ScriptedSim, never_succeed=True), jobs, horizon=4, max_steps=10, workers=2)
    assert sorted(r.job.init_state for r in results) == [0, 1, 2]
    assert all(not r.success and r.steps == 10 for r in results)
    assert sum(map(len, calls)) == 3 * 3  # ceil(10 / 4) policy rows per episode: at steps 0, 4, 8


def test_crashed_simulator_is_an_error_and_the_worker_restarts():
    jobs = [Job(TASKS[0], i) for i in range(5)]
    sim = partial(ScriptedSim, never_succeed=True, crash={1: "exit", 3: "raise"})
    results, _, restarts = _run(sim, jobs, horizon=1, max_steps=4, workers=2)
    by_init = {r.job.init_state: r for r in results}
    assert sorted(by_init) == [0, 1, 2, 3, 4]
    assert "died" in by_init[1].error and "scripted simulator failure" in by_init[3].error
    assert not by_init[1].success and not by_init[3].success
    assert all(by_init[i].error is None and by_init[i].steps == 4 for i in (0, 2, 4))
    assert restarts == 2


def test_video_frames_and_camera_order():
    sim = ScriptedSim()
    obs = sim.start(TASKS[0], 0, 0)
    obs["robot0_eye_in_hand_image"][:] = 9
    images = camera_images(obs)
    assert images.shape == (2, 8, 8, 3) and images[0, -1, -1, 0] == 255 and (images[1] == 9).all()
    assert video_frame(images).shape == (8, 16, 3)
    jobs = [Job(TASKS[0], 0, record_video=True), Job(TASKS[0], 1)]
    results, _, _ = _run(ScriptedSim, jobs, horizon=2, max_steps=40, workers=1)
    video = {r.job.init_state: r.video for r in results}
    assert len(video[0]) == results[0].steps + 1 and video[1] == []  # start frame + one per step


def test_pool_rejects_zero_workers():
    with pytest.raises(ValueError):
        WorkerPool(0, ScriptedSim)


def test_idle_workers_prefer_the_task_their_environment_holds():
    from collections import deque

    from rdt.libero.workers import take_job

    a, b = TASKS
    pending = deque([Job(a, 0), Job(a, 1), Job(b, 0), Job(b, 1)])
    assert take_job(pending, None, set()) == Job(a, 0)
    assert take_job(pending, None, {a}) == Job(b, 0)  # a fresh worker takes a task nobody holds
    assert take_job(pending, a, {b}) == Job(a, 1)  # same task: no environment rebuild
    assert take_job(pending, a, {b}) == Job(b, 1)  # nothing of its task left: the first job
    assert not pending


def test_a_slow_simulator_does_not_hold_the_others_back():
    """No rounds: while worker A executes a long command (episode 0: 0.3 s a step, 4 steps a command), worker B's
    episodes are planned and stepped on their own, several times between two plans of episode 0, and B starts its
    next job as soon as an episode ends."""
    jobs = [Job(TASKS[0], i) for i in range(4)]
    sim = partial(ScriptedSim, never_succeed=True, slow={0: 0.3})
    results, calls, _ = _run(sim, jobs, horizon=4, max_steps=12, workers=2, warm=True)
    assert sorted(r.job.init_state for r in results) == [0, 1, 2, 3] and all(r.steps == 12 for r in results)
    slow_plans = [k for k, c in enumerate(calls) if 0 in c]
    assert len(slow_plans) == 3
    between = [sum(1 for c in calls[a + 1 : b] if 0 not in c) for a, b in zip(slow_plans, slow_plans[1:])]
    assert max(between) >= 2, calls  # rounds would allow at most one plan of the others in between
    assert results[-1].job.init_state == 0, [r.job.init_state for r in results]
