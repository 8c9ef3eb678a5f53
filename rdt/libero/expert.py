"""Scripted LIBERO demonstrations in the official demo layout (``<task name>_demo.hdf5``).

A scripted expert solves pick-and-place tasks whose BDDL goal is a single ``(On A B)`` or ``(In A B)``: it
approaches above object A, descends, grasps, lifts, carries A above B, lowers it, releases and retreats, steering
by the simulator's object poses (body positions, collision-geometry bounding boxes, region sites) with OSC_POSE
delta actions clipped to [-1, 1] (gripper -1 open, +1 close).

Each attempt starts exactly as evaluation does (``env.seed(seed)``, reset, init state i, SETTLE_STEPS no-ops;
attempt k uses init state first + k, ``--first-init-state`` defaulting to 0). The expert's first
DEMO_DROP_FIRST_STEPS actions are no-ops: they are the steps the official layout drops, so a written demo replays
from ``rdt.libero.demo_file.replay_start`` (the standard start plus DEMO_DROP_FIRST_STEPS no-ops) followed by its
``actions``. The episode ends at the first step where the env reports success, or fails at the suite's step limit.

Two passes per attempt: the expert runs closed-loop in an env without camera observations (nothing rendered per
step, 5-9x faster); only when it succeeds are its actions replayed open-loop in a camera env (same seed, init state
and settle steps; the physics is bit-identical) to record the images, and the episode is written if the replay
succeeds too. Failures are counted and never written. ``expert_summary.json`` next to the demo files lists per
task the attempts, successes, the success rate and for every written demo its init state and seed.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rdt.errors import UserError
from rdt.libero import env as libero_env
from rdt.libero.demo_file import DemoWriter, record_episode
from rdt.libero.suites import (
    DEMO_CAMERA_SIZE,
    DEMO_DROP_FIRST_STEPS,
    INIT_STATES_PER_TASK,
    NOOP_ACTION,
    SETTLE_STEPS,
    Task,
    select_tasks,
    suite_names,
)
from rdt.utils.atomic import write_json
from rdt.utils.progress import Progress

SUMMARY_FILE = "expert_summary.json"
SUPPORTED_GOALS = ("on", "in")

# Controller constants (OSC_POSE: an action of 1 moves the position set-point 5 cm and the orientation 0.5 rad).
POS_GAIN = 10.0  # action per metre of position error
ROT_GAIN = 2.0  # action per radian of orientation error
REACHED_M = 0.008  # a waypoint counts as reached within this distance
HOVER_CLEARANCE_M = 0.10  # approach height above the object's top
CARRY_CLEARANCE_M = 0.06  # clearance of the object's bottom above the highest obstacle top while carrying
GRASP_DEPTH_M = 0.035  # fingertips at most this far below the object's top
RIM_GRASP_WIDTH_M = 0.07  # wider objects (bowls, plates) are grasped at the rim instead of the centre
RIM_INSET_M = 0.012  # fingertip centre this far inside the outer rim
PLACE_ABOVE_M = 0.01  # release with the object's bottom this high above the support
GRIPPER_STEPS = 12  # steps to close or open the gripper
RETREAT_M = 0.08
STALL_STEPS, STALL_M = 6, 0.002  # lowering ends when the eef moved less than STALL_M in STALL_STEPS steps


@dataclass(frozen=True)
class Goal:
    predicate: str  # "on" | "in"
    obj: str  # the object to move
    target: str  # an object name or a region site name


def task_goal(task: Task) -> Goal:
    """The task's BDDL goal as a :class:`Goal`; anything but one On/In predicate is a UserError."""
    path = libero_env.bddl_path(task)
    problem = libero_env.import_libero().bddl_utils.robosuite_parse_problem(str(path))
    goal = problem["goal_state"]
    shown = " ".join("(" + " ".join(map(str, g)) + ")" for g in goal)
    if len(goal) != 1 or len(goal[0]) != 3 or str(goal[0][0]).lower() not in SUPPORTED_GOALS:
        raise UserError(
            f"task {task.suite}/{task.name}: goal {shown} (in {path}) is not supported by the scripted "
            f"expert; it solves a single (On A B) or (In A B) goal"
        )
    pred, obj, target = (str(x) for x in goal[0])
    return Goal(pred.lower(), obj, target)


# ------------------------------------------------------------------------------------------------ scene geometry
def _subtree_bodies(model, root: int) -> list[int]:
    bodies = [root]
    for b in range(root + 1, model.nbody):
        if model.body_parentid[b] in bodies:
            bodies.append(b)
    return bodies


def body_aabb(env, body_id: int) -> tuple[np.ndarray, np.ndarray]:
    """World-frame axis-aligned box (lo (3,), hi (3,)) of the collision geoms of a body and its children."""
    model, data = env.env.sim.model._model, env.env.sim.data._data
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    bodies = set(_subtree_bodies(model, body_id))
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
    for g in range(model.ngeom):
        if model.geom_bodyid[g] not in bodies or (model.geom_contype[g] == 0 and model.geom_conaffinity[g] == 0):
            continue
        center, half = model.geom_aabb[g, :3], model.geom_aabb[g, 3:]
        corners = (center + signs * half) @ data.geom_xmat[g].reshape(3, 3).T + data.geom_xpos[g]  # (8, 3)
        lo, hi = np.minimum(lo, corners.min(0)), np.maximum(hi, corners.max(0))
    if not np.isfinite(lo).all():
        raise RuntimeError(f"body {body_id} has no collision geometry")
    return lo, hi


class Scene:
    """Poses of the goal's object and target in the running simulation."""

    def __init__(self, env, goal: Goal):
        inner = env.env
        self.env, self.goal = env, goal
        if goal.obj not in inner.objects_dict:
            raise UserError(f"goal object {goal.obj!r} is not a movable object of {inner.bddl_file_name}")
        self.obj_body = inner.obj_body_id[goal.obj]
        self.site = goal.target if goal.target in inner.object_sites_dict else None
        if self.site is None and goal.target not in inner.obj_body_id:
            raise UserError(f"goal target {goal.target!r} is neither an object nor a region of {inner.bddl_file_name}")
        parent = inner.object_sites_dict[self.site].parent_name if self.site else goal.target
        self.target_body = inner.obj_body_id.get(parent)
        self.obstacles = [b for n, b in inner.obj_body_id.items() if n != goal.obj]

    def obj(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(body position, aabb lo, aabb hi) of the object to move."""
        lo, hi = body_aabb(self.env, self.obj_body)
        return self.env.env.sim.data.body_xpos[self.obj_body].copy(), lo, hi

    def target_xy(self) -> np.ndarray:
        """Where the object's body position must end (xy): the region site or the target object's body."""
        data = self.env.env.sim.data
        if self.site:
            return data.get_site_xpos(self.site)[:2].copy()
        return data.body_xpos[self.target_body][:2].copy()

    def support_z(self) -> float:
        """Height at which the object's bottom is released (plus PLACE_ABOVE_M)."""
        inner = self.env.env
        if self.site and self.goal.predicate == "in":
            site = inner.object_sites_dict[self.site]
            bottom = inner.sim.data.get_site_xpos(self.site)[2] - float(site.size[2])
            if self.target_body is not None:
                bottom = max(bottom, body_aabb(self.env, self.target_body)[0][2])
            return bottom + 0.02
        if self.target_body is not None:
            return body_aabb(self.env, self.target_body)[1][2]
        return float(inner.sim.data.get_site_xpos(self.site)[2])

    def obstacle_top(self, start_xy: np.ndarray, radius: float) -> float:
        """Highest top of the other objects whose footprint comes within ``radius`` of the straight carry path
        from ``start_xy`` to the target (the target itself included)."""
        path = start_xy + np.linspace(0.0, 1.0, 25)[:, None] * (self.target_xy() - start_xy)  # (25, 2)
        top = self.support_z()
        for b in self.obstacles:
            lo, hi = body_aabb(self.env, b)
            gap = np.maximum(np.maximum(lo[:2] - path, path - hi[:2]), 0.0)  # (25, 2)
            if (np.linalg.norm(gap, axis=1) < radius).any():
                top = max(top, float(hi[2]))
        return top


# ------------------------------------------------------------------------------------------------ the expert
def _rotation_error(current: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Axis-angle (world frame) rotating matrix ``current`` onto ``target`` (both (3, 3))."""
    r = target @ current.T
    angle = np.arccos(np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0))
    if angle < 1e-6:
        return np.zeros(3)
    axis = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]]) / (2.0 * np.sin(angle))
    return axis * angle


class ScriptedExpert:
    """Closed-loop pick-and-place policy: ``act()`` -> (7,) action for the current simulator state.

    Phases: wait (no-ops) -> above -> descend -> grasp -> lift -> carry -> lower -> release -> retreat -> done."""

    def __init__(self, env, goal: Goal):
        self.env, self.scene = env, Scene(env, goal)
        self.phase, self.phase_steps = "wait", 0
        self.target_ori = self._eef()[1]
        self.hold_z = 0.0
        self.carry_bottom: float | None = None  # object bottom height while carrying, fixed at the lift
        self.recent_z: list[float] = []  # eef heights in the current phase (stall detection)

    def _eef(self) -> tuple[np.ndarray, np.ndarray]:
        site = self.env.env.robots[0].eef_site_id
        data = self.env.env.sim.data
        return data.site_xpos[site].copy(), data.site_xmat[site].reshape(3, 3).copy()

    def _goto(self, target: np.ndarray, gripper: float, max_speed: float = 1.0) -> tuple[np.ndarray, float]:
        pos, ori = self._eef()
        err = target - pos
        move = np.clip(POS_GAIN * err, -max_speed, max_speed)
        rot = np.clip(ROT_GAIN * _rotation_error(ori, self.target_ori), -1.0, 1.0)
        return np.concatenate([move, rot, [gripper]]), float(np.linalg.norm(err))

    def _next(self, phase: str) -> None:
        self.phase, self.phase_steps, self.recent_z = phase, 0, []

    def _grasp_point(self) -> np.ndarray:
        body, lo, hi = self.scene.obj()
        center = (lo + hi) / 2.0
        z = max(center[2], hi[2] - GRASP_DEPTH_M)
        if max(hi[0] - lo[0], hi[1] - lo[1]) <= RIM_GRASP_WIDTH_M:
            return np.array([center[0], center[1], z])
        # rim grasp: fingers close along world x, so put the fingertip centre on the rim at +y of the centre
        return np.array([center[0], hi[1] - RIM_INSET_M, hi[2] - 0.02])

    def act(self) -> np.ndarray:
        """The next OSC_POSE command (7,), from the current phase's controller."""
        self.phase_steps += 1
        ph = self.phase
        if ph == "wait":
            return self._wait()
        if ph in ("above", "descend"):
            return self._reach(ph)
        if ph == "grasp":
            return self._close_gripper()
        if ph in ("lift", "carry", "lower"):
            return self._transport(ph)
        if ph == "release":
            return self._open_gripper()
        if ph == "retreat":
            return self._retreat()
        return np.asarray(NOOP_ACTION, dtype=np.float64)

    def _wait(self) -> np.ndarray:
        """No-ops for the steps the demos drop, then on to ``above``."""
        if self.phase_steps >= DEMO_DROP_FIRST_STEPS:
            self._next("above")
        return np.asarray(NOOP_ACTION, dtype=np.float64)

    def _reach(self, ph: str) -> np.ndarray:
        """``above``: hover over the grasp point (rising first, then level); ``descend``: down onto it."""
        grasp = self._grasp_point()
        _, lo, hi = self.scene.obj()
        if ph == "above":
            target = grasp + np.array([0.0, 0.0, hi[2] - grasp[2] + HOVER_CLEARANCE_M])
            pos = self._eef()[0]
            if np.linalg.norm(pos[:2] - target[:2]) > 0.03:  # rise first, then travel level
                target[2] = max(target[2], pos[2])
        else:
            target = grasp
        action, dist = self._goto(target, -1.0)
        if dist < REACHED_M or self.phase_steps > 80:
            self._next("descend" if ph == "above" else "grasp")
        return action

    def _close_gripper(self) -> np.ndarray:
        """``grasp``: hold still and close for GRIPPER_STEPS, then ``lift``."""
        action, _ = self._goto(self._eef()[0], 1.0)
        action[:3] = 0.0
        if self.phase_steps >= GRIPPER_STEPS:
            self._next("lift")
        return action

    def _transport(self, ph: str) -> np.ndarray:
        """``lift`` clear of the obstacles, ``carry`` level over the target, ``lower`` onto its support (until
        there or stalled, i.e. resting on it already)."""
        body, lo, hi = self.scene.obj()
        pos = self._eef()[0]
        bottom_to_eef = pos[2] - lo[2]
        if self.carry_bottom is None:
            radius = 0.5 * float(np.max(hi[:2] - lo[:2])) + 0.02
            self.carry_bottom = self.scene.obstacle_top(body[:2], radius) + CARRY_CLEARANCE_M
        carry_bottom = self.carry_bottom
        goal_xy = pos[:2] + (self.scene.target_xy() - body[:2])
        if ph == "lift":
            target = np.array([pos[0], pos[1], carry_bottom + bottom_to_eef])
            nxt = "carry"
        elif ph == "carry":
            target = np.array([goal_xy[0], goal_xy[1], carry_bottom + bottom_to_eef])
            nxt = "lower"
        else:
            target = np.array([goal_xy[0], goal_xy[1], self.scene.support_z() + PLACE_ABOVE_M + bottom_to_eef])
            nxt = "release"
        action, dist = self._goto(target, 1.0, max_speed=1.0 if ph != "lower" else 0.5)
        self.recent_z.append(pos[2])
        stalled = (
            ph == "lower"
            and len(self.recent_z) > STALL_STEPS
            and abs(self.recent_z[-STALL_STEPS - 1] - pos[2]) < STALL_M
        )  # resting on the support already
        if dist < REACHED_M or stalled or self.phase_steps > 100:
            self._next(nxt)
        return action

    def _open_gripper(self) -> np.ndarray:
        """``release``: hold still and open for GRIPPER_STEPS, then ``retreat``."""
        action, _ = self._goto(self._eef()[0], -1.0)
        action[:3] = 0.0
        if self.phase_steps >= GRIPPER_STEPS:
            self.hold_z = self._eef()[0][2] + RETREAT_M
            self._next("retreat")
        return action

    def _retreat(self) -> np.ndarray:
        """``retreat``: straight up to RETREAT_M above the release, then ``done``."""
        pos = self._eef()[0]
        action, dist = self._goto(np.array([pos[0], pos[1], self.hold_z]), -1.0)
        if dist < REACHED_M or self.phase_steps > 40:
            self._next("done")
        return action


@dataclass
class Attempt:
    init_state: int
    seed: int
    success: bool
    actions: np.ndarray  # (T, 7) float64, the expert's clean commands after the settle steps (incl. the dropped ones)
    phase: str  # the expert's phase when the attempt ended
    executed: np.ndarray | None = None  # (T, 7) the commands stepped, when noise perturbed them (else = actions)


def perturb(action: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    """DART-style noise injection: Gaussian noise of std ``noise`` (action units; 1 = 5 cm or 0.5 rad per step) on
    the six arm dimensions, the gripper command untouched, clipped to [-1, 1]."""
    out = action.copy()
    out[:6] = np.clip(out[:6] + rng.normal(0.0, noise, 6), -1.0, 1.0)
    return out


def run_expert(
    env, goal: Goal, init_state: np.ndarray, index: int, seed: int, max_steps: int, noise: float = 0.0
) -> Attempt:
    """One closed-loop expert episode from the standard start; stops at the first success or ``max_steps``.

    With ``noise`` > 0 the env executes perturbed commands (:func:`perturb`, drawn from a generator seeded by
    (seed, init state), none during the dropped no-op steps) while the clean command the expert chose in that state
    is kept as the label: the demo then shows how to come back from states the expert alone never visits."""
    libero_env.start_episode(env, init_state, seed=seed)
    expert = ScriptedExpert(env, goal)
    rng = np.random.default_rng([seed, index])
    actions, executed = [], []
    success = False
    for t in range(max_steps):
        a = np.clip(expert.act(), -1.0, 1.0)
        e = perturb(a, rng, noise) if noise > 0 and t >= DEMO_DROP_FIRST_STEPS else a
        actions.append(a)
        executed.append(e)
        _, _, done, _ = env.step(e)
        if done:
            success = bool(env.check_success())
            break
    as_array = lambda x: np.asarray(x, dtype=np.float64).reshape(-1, 7)  # noqa: E731
    return Attempt(index, seed, success, as_array(actions), expert.phase, as_array(executed) if noise > 0 else None)


# ------------------------------------------------------------------------------------------------ worker processes
_ENVS: dict = {}  # per process: (task, cameras) -> env, reused across attempts


def _env(task: Task, camera_size: int, cameras: bool):
    key = (task, camera_size, cameras)
    if key not in _ENVS:
        for k in [k for k in _ENVS if k[0] != task]:  # one task at a time per process
            _ENVS.pop(k).close()
        _ENVS[key] = libero_env.make_env(task, camera_size, cameras=cameras)
    return _ENVS[key]


def attempt_demo(task: Task, index: int, seed: int, camera_size: int, noise: float) -> tuple[Attempt, dict | None]:
    """One attempt from init state ``index``: the closed-loop pass without cameras, then, when it succeeded, the
    open-loop replay of the executed commands with cameras (:func:`record_episode`; None when that replay fails).
    Runs in this process or in a worker (its envs are kept for the next attempt)."""
    goal = task_goal(task)
    states = libero_env.init_states(task)
    attempt = run_expert(_env(task, camera_size, False), goal, states[index], index, seed, task.max_steps, noise)
    if not attempt.success:
        return attempt, None
    executed = attempt.actions if attempt.executed is None else attempt.executed
    return attempt, record_episode(_env(task, camera_size, True), states[index], seed, executed)


def _close_envs() -> None:
    while _ENVS:
        _ENVS.popitem()[1].close()


def ordered_attempts(task: Task, indices: list[int], seed: int, camera_size: int, noise: float, workers: int):
    """Yield :func:`attempt_demo` results in the order of ``indices``, ``workers`` at a time in worker processes
    (1: in this process). The consumer stops when it has enough demos; attempts started ahead are then dropped, so
    the demos written do not depend on the number of workers."""
    if workers <= 1:
        try:
            for k in indices:
                yield attempt_demo(task, k, seed, camera_size, noise)
        finally:
            _close_envs()
        return
    import multiprocessing as mp
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        queue: deque = deque()
        todo = iter(indices)
        try:
            for k in todo:
                queue.append(pool.submit(attempt_demo, task, k, seed, camera_size, noise))
                if len(queue) >= workers:
                    break
            while queue:
                result = queue.popleft().result()
                nxt = next(todo, None)
                if nxt is not None:
                    queue.append(pool.submit(attempt_demo, task, nxt, seed, camera_size, noise))
                yield result
        finally:
            for f in queue:
                f.cancel()


# ------------------------------------------------------------------------------------------------ command
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", required=True, choices=suite_names(), help="LIBERO suite of the tasks")
    p.add_argument(
        "--tasks",
        nargs="+",
        required=True,
        metavar="T",
        help="task names, indices, shell patterns (e.g. 'KITCHEN_SCENE7_*') or 'all'; each goal must "
        "be a single (On A B) or (In A B)",
    )
    p.add_argument("--episodes", type=int, required=True, help="successful demos to write per task")
    p.add_argument("--out", required=True, type=Path, help="folder for <task>_demo.hdf5 and " + SUMMARY_FILE)
    p.add_argument(
        "--max-attempts",
        type=int,
        default=None,
        help=f"init states to try per task (attempt k uses init state FIRST + k; default: --episodes, "
        f"at most {INIT_STATES_PER_TASK} - FIRST)",
    )
    p.add_argument(
        "--first-init-state",
        type=int,
        default=0,
        metavar="FIRST",
        help="init state of the first attempt (default 0); e.g. 25 keeps the demos apart from an "
        "evaluation of init states 0-24",
    )
    p.add_argument("--seed", type=int, default=0, help="env.seed() of every episode, as in evaluation (default 0)")
    p.add_argument(
        "--action-noise",
        type=float,
        default=0.0,
        metavar="STD",
        help="DART-style noise injection: std of Gaussian noise on the executed arm commands (action units, 1 = 5 cm "
        "or 0.5 rad per step), the expert's clean command recorded as the label (default 0: none)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="K",
        help="simulator processes trying init states in parallel; the demos written do not depend on it (default 1)",
    )
    p.add_argument(
        "--camera-size",
        type=int,
        default=DEMO_CAMERA_SIZE,
        help=f"rendered image size in pixels (official demos: {DEMO_CAMERA_SIZE})",
    )


def _task_summary(task: Task, goal: Goal, path: Path, attempts: int, demos: list[dict], failures: list[dict]) -> dict:
    """One task's entry of the summary file: its goal, demo file (None without a success), attempts and outcomes."""
    return {
        "suite": task.suite,
        "task": task.name,
        "goal": f"({goal.predicate} {goal.obj} {goal.target})",
        "file": path.name if demos else None,
        "attempts": attempts,
        "successes": len(demos),
        "success_rate": len(demos) / attempts if attempts else 0.0,
        "demos": demos,
        "failures": failures,
    }


def generate(
    task: Task,
    episodes: int,
    max_attempts: int,
    seed: int,
    camera_size: int,
    out: Path,
    progress: Progress,
    first_init_state: int = 0,
    noise: float = 0.0,
    workers: int = 1,
) -> dict:
    """Generate demos for one task; returns its summary entry (the demo file is written if any succeeded)."""
    goal = task_goal(task)
    demos, attempts, failures = [], 0, []
    path = out / f"{task.name}_demo.hdf5"
    indices = list(range(first_init_state, first_init_state + max_attempts))
    with DemoWriter(path, task, camera_size) as writer:
        results = ordered_attempts(task, indices, seed, camera_size, noise, workers)
        try:
            for attempt, recorded in results:
                attempts += 1
                k = attempt.init_state
                if not attempt.success:
                    reason = f"no success in {task.max_steps} steps (expert phase {attempt.phase})"
                    failures.append({"init_state": k, "reason": reason})
                elif recorded is None:
                    failures.append({"init_state": k, "reason": "replay with cameras did not succeed"})
                else:
                    name = writer.write(recorded, attempt.actions)
                    steps = int(len(attempt.actions) - DEMO_DROP_FIRST_STEPS)
                    demos.append({"demo": name, "init_state": k, "seed": seed, "num_samples": steps})
                progress.update(1, task=task.name[:40], ok=len(demos), tried=attempts)
                if len(demos) >= episodes:
                    break
        finally:
            results.close()
        if not demos:
            writer.discard()
    return _task_summary(task, goal, path, attempts, demos, failures)


def main(args: argparse.Namespace) -> int:
    if args.episodes < 1:
        raise UserError(f"--episodes must be >= 1, got {args.episodes}")
    max_attempts = args.episodes if args.max_attempts is None else args.max_attempts
    first = args.first_init_state
    if not 0 <= first < INIT_STATES_PER_TASK:
        raise UserError(f"--first-init-state must be between 0 and {INIT_STATES_PER_TASK - 1}, got {first}")
    if not args.episodes <= max_attempts <= INIT_STATES_PER_TASK - first:
        raise UserError(
            f"--max-attempts must be between --episodes ({args.episodes}) and the "
            f"{INIT_STATES_PER_TASK - first} init states from --first-init-state {first} on, "
            f"got {max_attempts}"
        )
    if not 0.0 <= args.action_noise <= 1.0:
        raise UserError(f"--action-noise {args.action_noise}: expected a standard deviation between 0 and 1")
    if args.workers < 1:
        raise UserError(f"--workers {args.workers}: expected a positive integer")
    chosen = select_tasks(args.suite, args.tasks)
    for task in chosen:
        task_goal(task)  # unsupported goals fail before any simulation
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {
        "suite": args.suite,
        "seed": args.seed,
        "action_noise": args.action_noise,
        "camera_size": args.camera_size,
        "first_init_state": first,
        "settle_steps": SETTLE_STEPS,
        "dropped_first_steps": DEMO_DROP_FIRST_STEPS,
        "tasks": [],
    }
    start = time.monotonic()
    with Progress(len(chosen) * max_attempts, "expert", unit="episode") as progress:
        for task in chosen:
            entry = generate(
                task,
                args.episodes,
                max_attempts,
                args.seed,
                args.camera_size,
                args.out,
                progress,
                first,
                args.action_noise,
                args.workers,
            )
            summary["tasks"].append(entry)
            progress.update(max_attempts - entry["attempts"])
            print(
                f"{task.name}: {entry['successes']}/{entry['attempts']} successful "
                f"({100 * entry['success_rate']:.0f}%)",
                flush=True,
            )
    summary["seconds"] = round(time.monotonic() - start, 1)
    write_json(args.out / SUMMARY_FILE, summary)
    short = [e["task"] for e in summary["tasks"] if e["successes"] < args.episodes]
    if short:
        print(f"warning: fewer than {args.episodes} demos for: {', '.join(short)}", flush=True)
    return 0
