"""One evaluation run into a folder: the (task, init state) jobs still missing, the planning callback that makes one
batched policy call for the ready episodes, the simulator workers, each finished episode's record (appended to the
ledger) and video, and the summary.

    summary = evaluate(policy, settings, out, lang, info=..., stats=...)

The run holds OUT/.evaluate.lock, writes OUT/evaluate.log (the records of every rdt.evaluation module while it
runs), keeps the finished episodes of the same outcome keys already in the ledger and runs again those that ended
with a simulator error. rdt.replay runs the same loop with its own planning callback.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from rdt import statevec
from rdt.errors import UserError
from rdt.evaluation.inputs import ChunkPolicy, StateRangeCheck, noise_seed, policy_inputs
from rdt.evaluation.ledger import (
    EPISODES_FILE,
    LOCK_FILE,
    LOG_FILE,
    SUMMARY_FILE,
    VIDEO_DIR,
    append_episode,
    outcome_key,
    previous_records,
    select_records,
    success_counts,
)
from rdt.evaluation.settings import Settings, check_episodes, check_horizon
from rdt.libero import mapping, suites
from rdt.libero.workers import (
    EpisodeResult,
    Job,
    LiberoSimulator,
    Observation,
    Planner,
    Simulator,
    WorkerPool,
    run_jobs,
)
from rdt.utils.atomic import write_json
from rdt.utils.files import folder_lock
from rdt.utils.progress import Progress
from rdt.utils.versions import package_versions

log = logging.getLogger(__name__)
#: the logger the run's log file (OUT/evaluate.log) is attached to: every rdt.evaluation module logs under it
RUN_LOG = logging.getLogger("rdt.evaluation")


def plan_jobs(
    tasks: Sequence[suites.Task], episodes: int, videos_per_task: int, finished: set[tuple[str, int]]
) -> list[Job]:
    """The (task, init state) jobs still to run, task by task; episodes 0..videos_per_task-1 record video."""
    return [
        Job(task, i, record_video=i < videos_per_task)
        for task in tasks
        for i in range(episodes)
        if (task.name, i) not in finished
    ]


def make_planner(
    policy: ChunkPolicy,
    lang: dict[str, Any],
    state_check: StateRangeCheck | None,
    timing: dict[str, float],
    seed: int = 0,
):
    """The scheduler's planning callback: ONE policy call for all ready episodes -> LIBERO commands (B, chunk, 7)."""
    # the state slots the checkpoint was trained with (pipeline.json state_slots; e.g. no joints from LeRobot data)
    mask = mapping.availability_mask((getattr(policy, "pipeline", None) or {}).get("state_slots"))
    calls: dict[Job, int] = {}  # policy calls made so far per episode

    def plan(ready: list[tuple[Job, Observation]]) -> list[np.ndarray]:
        observations = [obs for _, obs in ready]
        images, valid, states, state_mask = policy_inputs(observations, mask)
        if state_check is not None:
            state_check.update(states)
        seeds = []
        for job, _ in ready:
            seeds.append(noise_seed(seed, job, calls.get(job, 0)))
            calls[job] = calls.get(job, 0) + 1
        t0 = time.perf_counter()
        unified = np.asarray(
            policy.act([lang[job.task.name] for job, _ in ready], images, valid, states, state_mask, noise_seeds=seeds)
        )
        timing["policy_s"] += time.perf_counter() - t0
        timing["policy_calls"] += 1
        if unified.ndim != 3 or unified.shape[0] != len(ready) or unified.shape[2] != statevec.STATE_DIM:
            raise RuntimeError(f"policy returned shape {unified.shape}; expected ({len(ready)}, chunk, 128)")
        return list(mapping.action_from_unified(unified))

    return plan


def evaluate(
    policy: ChunkPolicy,
    settings: Settings,
    out: str | os.PathLike,
    lang: dict[str, Any],
    info: dict[str, Any] | None = None,
    stats: dict | None = None,
    sim_factory: Callable[[], Simulator] | None = None,
    planner: Planner | None = None,
    summary_name: str = SUMMARY_FILE,
) -> dict:
    """Run the missing episodes of ``settings`` into ``out`` and write summary.json; returns the summary.

    ``lang``: task name -> instruction embedding (L, D); ``info``: checkpoint/step/device facts for the records and
    the summary; ``stats``: a dataset_stat entry for the state-range check; ``sim_factory``: a picklable callable
    making the simulator inside each worker (default: LIBERO with cameras of ``settings.camera_size``);
    ``planner``: the scheduler's planning callback instead of the policy's (open-loop replay, rdt.replay: horizon 0
    = each plan runs to the step limit; ``policy`` and ``lang`` are then unused)."""
    check_episodes(settings.episodes)
    tasks = settings.selected_tasks()  # resolved once for the whole run
    if planner is None:
        check_horizon(settings.horizon)
        missing = [t.name for t in tasks if t.name not in lang]
        if missing:
            raise UserError(f"no instruction embedding for task(s) {missing}")
    info = dict(info or {})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out, LOCK_FILE, "evaluating into this folder"):
        return _logged(policy, settings, tasks, out, lang, info, stats, sim_factory, planner, summary_name)


def _logged(
    policy, settings: Settings, tasks: list, out: Path, lang, info: dict, stats, sim_factory, planner, summary_name
) -> dict:
    """The evaluation with its log file (``out/evaluate.log``) attached to the package's logger (:data:`RUN_LOG`)."""
    handler = logging.FileHandler(out / LOG_FILE)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    RUN_LOG.addHandler(handler)
    RUN_LOG.setLevel(logging.INFO)  # the run log gets every episode, whatever the root logger's level
    try:
        return _evaluate(
            policy,
            settings,
            tasks,
            out,
            lang,
            info,
            stats,
            sim_factory or partial(LiberoSimulator, settings.camera_size),
            planner,
            summary_name,
        )
    finally:
        RUN_LOG.removeHandler(handler)
        handler.close()


def _missing_videos(out: Path, tasks: Sequence[suites.Task], per_task: int) -> set[tuple[str, int]]:
    """(task, init state) of the episodes that should have a video in ``out/videos`` and have none."""
    from rdt.video import video_name

    return {
        (t.name, i)
        for t in tasks
        for i in range(per_task)
        if not any((out / VIDEO_DIR / video_name(t.name, i, ok)).is_file() for ok in (True, False))
    }


def _episode_record(res: EpisodeResult, settings: Settings, info: dict, key: str) -> dict:
    """One line of episodes.jsonl: the episode's outcome, its settings and its outcome key."""
    return {
        "task": res.job.task.name,
        "suite": settings.suite,
        "init_state": res.job.init_state,
        "horizon": settings.horizon,
        "step": info.get("step"),
        "success": bool(res.success),
        "steps": res.steps,
        "seconds": round(res.seconds, 3),
        "error": res.error,
        "key": key,
    }


def _write_episode_video(out: Path, record: dict, res: EpisodeResult) -> None:
    """The episode's MP4 in ``out/videos``, named by task, init state and outcome."""
    from rdt.video import video_name, write_video

    write_video(
        out / VIDEO_DIR / video_name(record["task"], record["init_state"], res.success),
        res.video,
        fps=suites.CONTROL_FREQUENCY_HZ,
    )


def _log_start(settings: Settings, total: int, finished: int, episodes_path: Path, to_run: int) -> None:
    log.info(
        "evaluate %s horizon %d: %d episodes requested, %d already in %s, %d to run on %d simulator(s)",
        settings.suite,
        settings.horizon,
        total,
        finished,
        episodes_path,
        to_run,
        settings.envs,
    )


def _log_episode(record: dict, res: EpisodeResult) -> None:
    status = "ERROR" if res.error else ("success" if res.success else "failure")
    log.info(
        "episode %s init %d: %s after %d steps (%.1f s)%s",
        record["task"],
        record["init_state"],
        status,
        res.steps,
        res.seconds,
        f"\n{res.error}" if res.error else "",
    )


def _summary(
    settings: Settings,
    info: dict,
    keys: dict[str, str],
    tasks: list,
    final: list[dict],
    counts: dict[str, int],
    seconds: float,
    timing: dict[str, float],
    state_check: StateRangeCheck | None,
) -> dict:
    """summary.json of one run: success overall and per task over ``final`` (the requested episodes' records),
    ``counts`` (episodes_this_run, episodes_from_earlier_runs, worker_restarts), costs, settings and provenance."""
    return {
        "checkpoint": info.get("checkpoint"),
        "step": info.get("step"),
        "suite": settings.suite,
        "horizon": settings.horizon,
        "overall": success_counts(final),
        "tasks": {t.name: success_counts([r for r in final if r["task"] == t.name]) for t in tasks},
        "episodes_this_run": counts["episodes_this_run"],
        "episodes_from_earlier_runs": counts["episodes_from_earlier_runs"],
        "wall_time_s": round(seconds, 2),
        "episode_seconds_total": round(sum(float(r.get("seconds") or 0.0) for r in final), 2),
        "policy_calls": timing["policy_calls"],
        "policy_seconds": round(timing["policy_s"], 3),
        "worker_restarts": counts["worker_restarts"],
        "settings": asdict(settings) | {"tasks": [t.name for t in tasks], "settle_steps": suites.SETTLE_STEPS},
        "keys": keys,
        "state_range": state_check.summary() if state_check is not None else None,
        "versions": package_versions(),
        "device": info.get("device"),
        "info": {k: v for k, v in info.items() if k not in ("checkpoint", "step", "device")},
    }


def _evaluate(
    policy,
    settings: Settings,
    tasks: list,
    out: Path,
    lang: dict,
    info: dict,
    stats: dict | None,
    sim_factory,
    planner,
    summary_name,
) -> dict:
    t_start = time.monotonic()
    episodes_path = out / EPISODES_FILE
    keys = {t.name: outcome_key(settings, info, (lang or {}).get(t.name)) for t in tasks}
    records = previous_records(out, keys)
    wanted = {(t.name, i) for t in tasks for i in range(settings.episodes)}
    finished = {(r["task"], int(r["init_state"])) for r in records} & wanted
    missing_videos = _missing_videos(out, tasks, min(settings.videos_per_task, settings.episodes)) & finished
    if missing_videos:  # e.g. videos_per_task raised after the episodes ran: play them again to record them
        log.info("%d finished episode(s) run again to record the videos now asked for", len(missing_videos))
        finished -= missing_videos
    jobs = plan_jobs(tasks, settings.episodes, settings.videos_per_task, finished)
    total = len(tasks) * settings.episodes
    _log_start(settings, total, len(finished), episodes_path, len(jobs))
    state_check = StateRangeCheck(stats) if stats is not None else None
    timing = {"policy_s": 0.0, "policy_calls": 0}
    done_ok = sum(1 for r in records if (r["task"], int(r["init_state"])) in wanted and r.get("success"))
    progress = Progress(total, f"evaluate H={settings.horizon}", unit="ep", initial=len(finished), every=10.0)

    def on_result(res: EpisodeResult) -> None:
        nonlocal done_ok
        record = _episode_record(res, settings, info, keys[res.job.task.name])
        if res.job.record_video and res.video:
            # before the record: a video that cannot be written (full disk) stops the run with the episode still
            # missing, so the rerun plays it again and writes its video (write_video checks the file first)
            _write_episode_video(out, record, res)
        append_episode(episodes_path, record)
        records.append(record)
        done_ok += int(res.success)
        _log_episode(record, res)
        progress.update(1, success=f"{done_ok}/{progress.n + 1}")

    if jobs:
        with WorkerPool(min(settings.envs, len(jobs)), sim_factory) as pool:
            run_jobs(
                pool,
                jobs,
                planner or make_planner(policy, lang, state_check, timing, settings.seed),
                settings.horizon or settings.max_steps,
                settings.max_steps,
                settings.seed,
                on_result,
            )
            restarts = pool.restarts
    else:
        restarts = 0
    progress.close()
    final = [r for r in select_records(records, keys) if (r["task"], int(r["init_state"])) in wanted]
    counts = {"episodes_this_run": len(jobs), "episodes_from_earlier_runs": len(finished), "worker_restarts": restarts}
    summary = _summary(settings, info, keys, tasks, final, counts, time.monotonic() - t_start, timing, state_check)
    write_json(out / summary_name, summary)
    o = summary["overall"]
    log.info(
        "done: %d/%d successes, %d errors, %.1f s", o["successes"], o["episodes"], o["errors"], summary["wall_time_s"]
    )
    return summary
