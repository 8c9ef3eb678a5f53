"""Open-loop replay of demonstrations from evaluation init states: the floor an imitation policy has to beat.

For every evaluated (task, init state) the demo of that task whose first recorded simulator state (``states[0]``) is
nearest to the init state (Euclidean distance over the flattened MuJoCo state without its first entry, the
simulation time, which differs by the settle steps alone) is replayed without looking at any
observation: the standard episode start (env.seed, reset, init state, settle steps), the DEMO_DROP_FIRST_STEPS no-ops
the official layout drops, the demo's ``actions``, then "hold" commands (no motion, the demo's last gripper
command) until the step limit. Success is the environment's check, as in evaluation. A policy that does not beat this
on the same (task, init state, seed) pairs imitates worse than a tape recorder.

The demos replayed are the ones the compared run trains on: the first ``--demos-per-task`` demos of each task's
file in numeric order (all when not given), from official LIBERO files or the scripted expert's. The results have
the layout and the record format of ``rdt evaluate`` (episodes.jsonl, summary.json, videos/) with horizon 0 = open
loop, so the report pairs them with every run; ``replay_plan.json`` lists which demo was replayed from which init
state and how far its start was.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rdt.errors import UserError
from rdt.evaluation.command import add_summary_name, settings_from_args
from rdt.evaluation.ledger import SUMMARY_FILE
from rdt.evaluation.run import evaluate
from rdt.evaluation.settings import Settings, check_episodes
from rdt.fingerprint import fingerprint
from rdt.libero import suites
from rdt.libero.workers import Job, Observation, Planner
from rdt.utils.atomic import write_json
from rdt.utils.hashing import bytes_key

PLAN_FILE = "replay_plan.json"
DEFAULT_CAMERA_SIZE = 64  # the cameras only feed the videos: nothing observes them
OPEN_LOOP = 0  # the horizon recorded for replay: no re-planning


@dataclass(frozen=True)
class ReplayDemo:
    name: str  # data/demo_<i> of the file
    start: np.ndarray  # states[0], the flattened simulator state before the first recorded action
    actions: np.ndarray  # (T, 7) LIBERO commands


def read_demos(inputs: list[str], suite: str, tasks: list[str], demos_per_task: int | None) -> dict[str, list]:
    """Task name -> its replayable demos (the first ``demos_per_task`` of its file in numeric order, all when
    None); a selected task without a demo file is an error naming the folder."""
    from rdt.libero.convert import _open, demo_keys, find_demo_files

    files = find_demo_files(inputs)
    out: dict[str, list[ReplayDemo]] = {}
    for task in suites.select_tasks(suite, tasks):
        path = files.get(task.name)
        if path is None:
            raise UserError(f"{', '.join(inputs)}: no demo file for task {task.name!r} ({task.name}_demo.hdf5)")
        with _open(path) as f:
            keys = demo_keys(f, path)[:demos_per_task]
            demos = []
            for k in keys:
                g = f["data"][k]
                for name in ("states", "actions"):
                    if name not in g:
                        raise UserError(f"{path}: data/{k} has no {name!r} dataset (expected the robomimic layout)")
                actions = np.asarray(g["actions"][()], dtype=np.float64)
                if actions.ndim != 2 or actions.shape[1] != 7:
                    raise UserError(f"{path}: data/{k}/actions has shape {actions.shape}; expected (T, 7)")
                demos.append(ReplayDemo(k, np.asarray(g["states"][0], dtype=np.float64), actions))
        out[task.name] = demos
    return out


def nearest(demos: list[ReplayDemo], init_state: np.ndarray, where: str) -> tuple[int, float]:
    """(index, distance) of the demo whose start is nearest to ``init_state``."""
    init_state = np.asarray(init_state, dtype=np.float64)
    bad = [d.name for d in demos if d.start.shape != init_state.shape]
    if bad:
        raise UserError(
            f"{where}: demo(s) {bad[:3]} start from simulator states of shape {demos[0].start.shape}, the task's "
            f"init states have shape {init_state.shape}; the file does not belong to this LIBERO version"
        )
    dist = [float(np.linalg.norm(d.start[1:] - init_state[1:])) for d in demos]  # [0] is the simulation time
    best = int(np.argmin(dist))
    return best, dist[best]


def replay_commands(demo: ReplayDemo, length: int) -> np.ndarray:
    """(length, 7): the dropped no-ops, the demo's actions, then hold commands (no motion, last gripper command)."""
    noops = np.tile(np.asarray(suites.NOOP_ACTION, dtype=np.float64), (suites.DEMO_DROP_FIRST_STEPS, 1))
    hold = np.zeros(7)
    hold[6] = demo.actions[-1, 6] if len(demo.actions) else suites.NOOP_ACTION[6]
    plan = np.concatenate([noops, demo.actions, np.tile(hold, (max(length, 1), 1))])
    return plan[:length]


def make_replay_planner(chosen: dict[tuple[str, int], ReplayDemo], max_steps: int) -> Planner:
    """The scheduler's planning callback: an episode's first call gets its whole open-loop plan (run_jobs with
    horizon 0 executes up to the step limit from one call); later calls cannot happen and are errors."""
    started: set[Job] = set()

    def plan(ready: list[tuple[Job, Observation]]) -> list[np.ndarray]:
        out = []
        for job, _ in ready:
            if job in started:
                raise RuntimeError(f"replay of {job.task.name} init {job.init_state} was asked to plan twice")
            started.add(job)
            out.append(replay_commands(chosen[(job.task.name, job.init_state)], max_steps))
        return out

    return plan


def replay(
    demos: dict[str, list[ReplayDemo]],
    settings: Settings,
    out: str | Path,
    info: dict | None = None,
    sim_factory=None,
    summary_name: str = SUMMARY_FILE,
) -> dict:
    """Replay into ``out`` (episodes.jsonl, summary.json, videos/, replay_plan.json); returns the summary."""
    from rdt.libero import env as libero_env

    out = Path(out)
    tasks = settings.selected_tasks()
    chosen: dict[tuple[str, int], ReplayDemo] = {}
    rows = []
    for task in tasks:
        if not demos.get(task.name):
            raise UserError(f"no demo of task {task.name!r} to replay")
        states = libero_env.init_states(task)
        for i in range(settings.episodes):
            k, dist = nearest(demos[task.name], states[i], f"task {task.name}")
            chosen[(task.name, i)] = demos[task.name][k]
            rows.append({"task": task.name, "init_state": i, "demo": demos[task.name][k].name, "distance": dist})
    identity = bytes_key(
        b"".join(f"{t}/{d.name}:".encode() + np.ascontiguousarray(d.actions).tobytes() for t in demos for d in demos[t])
    )
    info = {
        "checkpoint": None,
        "step": 0,
        "kind": "replay",
        "identity": f"replay:{identity}",
        "code": fingerprint("rdt.replay"),
        "demos": {t: [d.name for d in ds] for t, ds in demos.items()},
        **(info or {}),
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(
        out / PLAN_FILE,
        {"rule": "nearest demo start (Euclidean over the flattened sim state without the time)", "episodes": rows},
    )
    planner = make_replay_planner(chosen, settings.max_steps)
    return evaluate(
        None, settings, out, {}, info=info, sim_factory=sim_factory, planner=planner, summary_name=summary_name
    )


# ------------------------------------------------------------------------------------------------ command line
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--demos", nargs="+", required=True, metavar="DIR|FILE", help="LIBERO *_demo.hdf5 files or folders")
    p.add_argument("--suite", required=True, choices=suites.suite_names(), help="LIBERO suite of the tasks")
    p.add_argument("--tasks", nargs="+", default=["all"], metavar="T", help="task names, indices or patterns")
    p.add_argument(
        "--demos-per-task",
        type=int,
        metavar="N",
        help="replay only the first N demos of each file, as `rdt convert --demos-per-task N` trains on (default all)",
    )
    p.add_argument(
        "--episodes",
        type=int,
        required=True,
        metavar="N",
        help=f"episodes per task; episode i starts from init state i (1..{suites.INIT_STATES_PER_TASK})",
    )
    p.add_argument("--max-steps", type=int, metavar="M", help="step limit per episode (default: the suite's)")
    p.add_argument("--envs", type=int, default=1, metavar="K", help="parallel simulator processes (default 1)")
    p.add_argument("--seed", type=int, default=0, help="env.seed of every episode (default 0)")
    p.add_argument("--videos-per-task", type=int, default=1, metavar="V", help="videos of the first V episodes")
    p.add_argument(
        "--camera-size", type=int, default=DEFAULT_CAMERA_SIZE, metavar="PX", help="video resolution (default 64)"
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    add_summary_name(p)


def main(args: argparse.Namespace) -> int:
    from rdt.utils.logs import setup_logging

    setup_logging()
    check_episodes(args.episodes)
    for flag, value in (("--envs", args.envs), ("--max-steps", args.max_steps), ("--camera-size", args.camera_size)):
        if value is not None and value < 1:
            raise UserError(f"{flag} {value}: expected a positive integer")
    if args.demos_per_task is not None and args.demos_per_task < 1:
        raise UserError(f"--demos-per-task {args.demos_per_task}: expected a positive integer")
    tasks = suites.select_tasks(args.suite, args.tasks)
    demos = read_demos(args.demos, args.suite, [t.name for t in tasks], args.demos_per_task)
    settings = settings_from_args(args, tasks, OPEN_LOOP, {})
    info = {"demos_per_task": args.demos_per_task}
    summary = replay(demos, settings, args.out, info=info, summary_name=args.summary_name)
    o = summary["overall"]
    print(f"{args.suite} open-loop replay: {o['successes']}/{o['episodes'] - o['errors']} successes -> {args.out}")
    return 0
