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
task the attempts, successes, the success rate and for every written demo its init state and seed; it is written
last and also records the code that generated the demos (``code``: the expert's fingerprint, which covers the
simulator wrapper), a digest of the demo files (``content``) and when it finished: the workflow keeps using an
earlier generation whose demos are identical (rdt/plan/demos.py).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from rdt import fingerprint, layout
from rdt.errors import UserError
from rdt.libero import env as libero_env
from rdt.libero.demo_file import DemoWriter, record_episode
from rdt.libero.expert_policy import ScriptedExpert
from rdt.libero.expert_scene import Goal, task_goal
from rdt.libero.suites import (
    DEMO_CAMERA_SIZE,
    DEMO_DROP_FIRST_STEPS,
    INIT_STATES_PER_TASK,
    SETTLE_STEPS,
    Task,
    select_tasks,
    suite_names,
)
from rdt.utils.atomic import write_json
from rdt.utils.hashing import files_digest
from rdt.utils.progress import Progress

SUMMARY_FILE = layout.EXPERT_SUMMARY
DEMO_FILES = "*_demo.hdf5"  # what the content digest covers (the summary records timings)


# ------------------------------------------------------------------------------------------------ attempts
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
    summary["code"] = fingerprint.fingerprint("rdt.libero.expert")  # this module and what it imports
    summary["content"] = files_digest(args.out, DEMO_FILES)
    summary["finished"] = datetime.now(UTC).isoformat(timespec="microseconds")
    write_json(args.out / SUMMARY_FILE, summary)
    short = [e["task"] for e in summary["tasks"] if e["successes"] < args.episodes]
    if short:
        print(f"warning: fewer than {args.episodes} demos for: {', '.join(short)}", flush=True)
    return 0
