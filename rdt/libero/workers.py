"""Parallel simulator workers for evaluation and the episode scheduler that drives them.

Each worker is a ``spawn``-ed process that owns one simulator (its own LIBERO environment and EGL context; the
parent never creates one). The parent sends ``start`` (an episode's start protocol) or ``step`` (a sequence of
LIBERO commands, executed until the episode's success check fires) and gets back the observation after it.

:func:`run_jobs` schedules a queue of (task, init state) jobs onto the workers as they become free: a worker whose
episode ended takes the next job at once, and a planning call is made as soon as any episode needs actions (for every
episode that needs them at that moment), while the other workers keep stepping. Each job is started exactly once, on
exactly one worker, whatever the order in which episodes end. A simulator that raises or dies ends its episode with
an error (not a failure) and the worker process is restarted.
"""

from __future__ import annotations

import multiprocessing as mp
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Any, Protocol

import numpy as np

from rdt.libero import mapping
from rdt.libero.suites import Task

#: camera slots that LIBERO provides, in RDT order (exterior, right wrist); the left wrist is absent.
PRESENT_SLOTS = tuple(slot for slot in mapping.CAMERA_SLOTS if mapping.CAMERAS[slot] is not None)
COMMAND_TIMEOUT_S = 1800.0  # a worker silent for this long (one reset or one chunk of steps) is treated as crashed


@dataclass(frozen=True)
class Job:
    """One episode: ``task`` from its init state number ``init_state``; ``record_video`` keeps its frames."""

    task: Task
    init_state: int
    record_video: bool = False


@dataclass
class Observation:
    """What a worker reports after ``start`` or ``step``.

    images (C, S, S, 3) uint8 upright, one per slot of :data:`PRESENT_SLOTS`; prev_images: the same one env step
    earlier, or None right after the episode start; state (128,) float32 unified state; steps: policy steps executed
    by this command; done: the environment's success check; video: (steps + 1 at start, S, 2S, 3) frames when the
    job records video, else None."""

    images: np.ndarray
    prev_images: np.ndarray | None
    state: np.ndarray
    steps: int
    done: bool
    video: list[np.ndarray] | None = None


@dataclass
class EpisodeResult:
    job: Job
    success: bool
    steps: int
    seconds: float
    error: str | None = None
    video: list[np.ndarray] = field(default_factory=list)


class Simulator(Protocol):
    """What a worker runs: ``start`` -> raw observation dict after the start protocol; ``step`` -> (obs, done)."""

    def start(self, task: Task, init_state: int, seed: int) -> dict: ...

    def step(self, action: np.ndarray) -> tuple[dict, bool]: ...

    def close(self) -> None: ...


class LiberoSimulator:
    """A LIBERO environment with cameras of ``camera_size`` px; rebuilt when the task changes, reused otherwise."""

    def __init__(self, camera_size: int):
        self.camera_size = camera_size
        self._task: Task | None = None
        self._env = None
        self._init_states: np.ndarray | None = None

    def start(self, task: Task, init_state: int, seed: int) -> dict:
        from rdt.libero import env as libero_env

        if task != self._task:
            self.close()
            self._init_states = libero_env.init_states(task)
            self._env = libero_env.make_env(task, self.camera_size)
            self._task = task
        if not 0 <= init_state < len(self._init_states):
            raise IndexError(f"{task.name} has {len(self._init_states)} init states, asked for {init_state}")
        return libero_env.start_episode(self._env, self._init_states[init_state], seed=seed)

    def step(self, action: np.ndarray) -> tuple[dict, bool]:
        obs, _reward, done, _info = self._env.step(action)
        return obs, bool(done)

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
        self._env, self._task = None, None


def camera_images(obs: dict) -> np.ndarray:
    """Raw env observation -> (C, S, S, 3) upright images in :data:`PRESENT_SLOTS` order."""
    return np.stack([mapping.upright(obs[mapping.CAMERAS[slot][1]]) for slot in PRESENT_SLOTS])


def video_frame(images: np.ndarray) -> np.ndarray:
    """(C, S, S, 3) upright images -> (S, C*S, 3): the cameras side by side."""
    return np.concatenate(list(images), axis=1)


# ------------------------------------------------------------------------------------------------ worker process
class _Episode:
    """Worker-side state of the running episode: the last two camera frames and the video buffer."""

    def __init__(self, obs: dict, record_video: bool):
        self.images = camera_images(obs)
        self.prev: np.ndarray | None = None
        self.state = mapping.state_from_env_obs(obs)
        self.video: list[np.ndarray] | None = [video_frame(self.images)] if record_video else None

    def advance(self, obs: dict) -> None:
        self.prev, self.images = self.images, camera_images(obs)
        self.state = mapping.state_from_env_obs(obs)
        if self.video is not None:
            self.video.append(video_frame(self.images))

    def report(self, steps: int, done: bool) -> Observation:
        video, self.video = self.video, ([] if self.video is not None else None)
        return Observation(self.images, self.prev, self.state, steps, done, video)


def _worker_main(conn, sim_factory: Callable[[], Simulator]) -> None:
    """Serve commands until ``close`` or until the parent goes away."""
    sim = sim_factory()
    episode: _Episode | None = None
    try:
        while True:
            try:
                command, payload = conn.recv()
            except (EOFError, OSError):
                return
            if command == "close":
                return
            try:
                if command == "start":
                    job, seed = payload
                    obs = sim.start(job.task, job.init_state, seed)
                    episode = _Episode(obs, job.record_video)
                    done = False
                    reply = episode.report(0, done)
                elif command == "step":
                    actions = np.asarray(payload, dtype=np.float64)  # (n, 7)
                    steps, done = 0, False
                    for action in actions:
                        obs, done = sim.step(action)
                        episode.advance(obs)
                        steps += 1
                        if done:
                            break
                    reply = episode.report(steps, done)
                else:
                    raise ValueError(f"unknown worker command {command!r}")
                conn.send(("ok", reply))
            except Exception:  # noqa: BLE001 - any simulator failure is reported to the parent as an error
                conn.send(("error", traceback.format_exc()))
    finally:
        try:
            sim.close()
        except Exception:  # noqa: BLE001 - closing a broken simulator must not mask the exit
            pass


class WorkerCrash(Exception):
    """A worker raised, died or went silent; the message holds its traceback or exit code."""


class WorkerPool:
    """``size`` simulator worker processes (multiprocessing ``spawn``: each builds its own EGL context).

    ``sim_factory`` is a picklable zero-argument callable run inside each worker."""

    def __init__(self, size: int, sim_factory: Callable[[], Simulator], timeout_s: float = COMMAND_TIMEOUT_S):
        if size < 1:
            raise ValueError(f"need at least one worker, got {size}")
        self.size, self.sim_factory, self.timeout_s = size, sim_factory, timeout_s
        self._ctx = mp.get_context("spawn")
        self._procs: list[Any] = [None] * size
        self._conns: list[Any] = [None] * size
        self._deadlines = [float("inf")] * size  # when a silent worker counts as crashed (from its last command)
        self.restarts = 0
        for i in range(size):
            self._spawn(i)

    def _spawn(self, i: int) -> None:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=_worker_main, args=(child, self.sim_factory), daemon=True, name=f"rdt-sim-{i}")
        proc.start()
        child.close()
        self._procs[i], self._conns[i] = proc, parent

    def send(self, i: int, command: str, payload: Any = None) -> None:
        self._deadlines[i] = time.monotonic() + self.timeout_s
        try:
            self._conns[i].send((command, payload))
        except (BrokenPipeError, OSError):
            pass  # a dead worker is noticed by recv

    def wait(self, ids: Iterable[int], timeout: float = 1.0) -> list[int]:
        """Those of workers ``ids`` whose reply can be received now, or that died or went silent (their
        :meth:`recv` raises); empty when none within ``timeout`` seconds."""
        ids = list(ids)
        handles = {self._conns[i]: i for i in ids} | {self._procs[i].sentinel: i for i in ids}
        ready = {handles[h] for h in wait(list(handles), timeout)}
        now = time.monotonic()
        return sorted(ready | {i for i in ids if now > self._deadlines[i]})

    def recv(self, i: int) -> Observation:
        """The reply to the last command sent to worker ``i`` (waits for it); raises :class:`WorkerCrash`."""
        conn, proc = self._conns[i], self._procs[i]
        while not conn.poll(1.0):
            if not proc.is_alive():
                raise WorkerCrash(f"simulator worker {i} died (exit code {proc.exitcode})")
            if time.monotonic() > self._deadlines[i]:
                raise WorkerCrash(f"simulator worker {i} sent nothing for {self.timeout_s:.0f} s")
        try:
            status, reply = conn.recv()
        except (EOFError, OSError):
            raise WorkerCrash(f"simulator worker {i} died (exit code {proc.exitcode})") from None
        if status != "ok":
            raise WorkerCrash(reply)
        return reply

    def restart(self, i: int) -> None:
        self._stop(i, graceful=False)
        self._spawn(i)
        self.restarts += 1

    def _stop(self, i: int, graceful: bool) -> None:
        proc, conn = self._procs[i], self._conns[i]
        if proc is None:
            return
        if graceful and proc.is_alive():
            self.send(i, "close")
            proc.join(timeout=30)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=30)
        conn.close()
        self._procs[i] = self._conns[i] = None

    def close(self) -> None:
        for i in range(self.size):
            self._stop(i, graceful=True)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ------------------------------------------------------------------------------------------------ scheduler
#: plan(ready) -> one (n_i, 7) LIBERO command array per ready episode (n_i >= 1), for all episodes waiting.
Planner = Callable[[list[tuple[Job, Observation]]], list[np.ndarray]]


@dataclass
class _Running:
    job: Job
    started: float
    steps: int = 0
    video: list[np.ndarray] = field(default_factory=list)


def take_job(pending: deque[Job], loaded: Task | None, elsewhere: set[Task]) -> Job:
    """Remove and return the job a worker whose environment holds task ``loaded`` should run next: the first job of
    that task (no environment rebuild), else the first job of a task no other worker holds (``elsewhere``), else
    the first job."""
    for wanted in (lambda job: job.task == loaded, lambda job: job.task not in elsewhere):
        for k, job in enumerate(pending):
            if wanted(job):
                del pending[k]
                return job
    return pending.popleft()


def run_jobs(
    pool: WorkerPool,
    jobs: Iterable[Job],
    plan: Planner,
    horizon: int,
    max_steps: int,
    seed: int,
    on_result: Callable[[EpisodeResult], None],
) -> None:
    """Run every job once on the pool's workers; ``on_result`` is called as each episode ends.

    Receding horizon: an episode executes the first ``min(horizon, steps left)`` commands of each planned chunk
    until the success check or ``max_steps``. No rounds: a freed worker starts the next job at once (:func:`take_job`)
    and one ``plan`` call covers the episodes whose observations have arrived while the others step."""
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    pending = deque(jobs)
    running: dict[int, _Running] = {}
    loaded: list[Task | None] = [None] * pool.size  # the task whose environment each worker holds

    def start_next(i: int) -> None:
        if not pending:
            return
        job = take_job(pending, loaded[i], {t for k, t in enumerate(loaded) if k != i and t is not None})
        loaded[i] = job.task
        running[i] = _Running(job, time.monotonic())
        pool.send(i, "start", (job, seed))

    def finish(i: int, success: bool, error: str | None = None) -> None:
        ep = running.pop(i)
        on_result(EpisodeResult(ep.job, success, ep.steps, time.monotonic() - ep.started, error, ep.video))
        start_next(i)

    for i in range(pool.size):
        start_next(i)
    while running:
        ready: list[tuple[int, Observation]] = []
        for i in pool.wait(sorted(running)):
            try:
                obs = pool.recv(i)
            except WorkerCrash as crash:
                pool.restart(i)
                loaded[i] = None
                finish(i, success=False, error=str(crash))
                continue
            ep = running[i]
            ep.steps += obs.steps
            if obs.video:
                ep.video.extend(obs.video)
            if obs.done or ep.steps >= max_steps:
                finish(i, success=obs.done)
            else:
                ready.append((i, obs))
        if not ready:
            continue
        chunks = plan([(running[i].job, obs) for i, obs in ready])
        if len(chunks) != len(ready):
            raise RuntimeError(f"planner returned {len(chunks)} action chunks for {len(ready)} episodes")
        for (i, _), chunk in zip(ready, chunks):
            pool.send(i, "step", first_commands(chunk, min(horizon, max_steps - running[i].steps)))


def first_commands(chunk: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` LIBERO commands (n, 7) of a planned chunk; raises when the planner gave fewer or another
    shape."""
    chunk = np.asarray(chunk, dtype=np.float64)
    if chunk.ndim != 2 or chunk.shape[1] != 7 or len(chunk) < n:
        raise RuntimeError(f"planner returned actions of shape {chunk.shape}; need at least ({n}, 7)")
    return chunk[:n]
