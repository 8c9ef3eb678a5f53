"""Evaluate a checkpoint in the LIBERO simulator at one or more execution horizons H (several: the model is loaded
once and each horizon is written to --out/h<H>; without --lang the tasks' instructions are encoded with the
checkpoint's text encoder into --out/lang.safetensors; --episodes defaults to 50 per task, the LIBERO convention).

Protocol (the published LIBERO evaluations): episode i of a task starts from the task's init state i, with
env.seed(SEED), reset, set_init_state(i) and the settle no-op steps (rdt.libero.env.start_episode); at most the
suite's max steps follow; success is the environment's success check. Receding-horizon control: every H steps one
batched policy call predicts a 64-step chunk for every running episode from its current observation (both cameras
upright, two frames of history: the previous env step's frames, background at an episode's first call) and the first
H actions are executed. Simulators run in --envs worker processes fed from a queue of (task, init state) jobs.

Outputs in --out: episodes.jsonl (one line per finished episode, appended and fsynced; a rerun skips the episodes
already there and retries those that ended with a simulator error), summary.json (per task and overall success
with 95% Wilson intervals), videos/<task>__init<i>__<success|failure>.mp4 (both cameras side by side) and
evaluate.log.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from rdt import layout, statevec
from rdt.errors import UserError
from rdt.fingerprint import fingerprint
from rdt.libero import mapping, suites
from rdt.libero.workers import (
    PRESENT_SLOTS,
    EpisodeResult,
    Job,
    LiberoSimulator,
    Observation,
    Planner,
    Simulator,
    WorkerPool,
    run_jobs,
)
from rdt.model.config import IMG_HISTORY, PRED_HORIZON
from rdt.report_stats import wilson as wilson_interval  # the one Wilson interval (also the report's)
from rdt.utils.atomic import write_json, write_text
from rdt.utils.files import folder_lock, read_json
from rdt.utils.hashing import bytes_key, settings_key
from rdt.utils.hashing import file_sha256 as file_digest
from rdt.utils.logs import setup_logging
from rdt.utils.progress import Progress
from rdt.utils.versions import package_versions

EPISODES_FILE = "episodes.jsonl"
SUMMARY_FILE = layout.SUMMARY  # without --summary-name
LOG_FILE = "evaluate.log"
LOCK_FILE = ".evaluate.lock"  # one evaluation at a time writes into a folder
VIDEO_DIR = "videos"
DEFAULT_CAMERA_SIZE = suites.DEMO_CAMERA_SIZE  # without pipeline.json image_size: the official demos' size
DEFAULT_EPISODES = 50  # per task: the published LIBERO evaluations
#: a state value is "far outside" the training range when it lies beyond min/max by more than this fraction of
#: the range (or than STATE_FAR_ABS for dimensions that were constant in training).
STATE_FAR_FRACTION = 0.5
STATE_FAR_ABS = 0.05

log = logging.getLogger("rdt.evaluate")


class ChunkPolicy(Protocol):
    """What the evaluator calls (``rdt.policy.Policy`` or a test policy): one call per re-plan.

    images (B, 2, 3, S, S, 3) uint8 (history t-1, t; cameras exterior, right wrist, left wrist) with valid (B, 2, 3)
    bool; states (B, 128); state_mask (B, 128); noise_seeds: one sampling-noise seed per row (:func:`noise_seed`)
    -> unified actions (B, chunk, 128)."""

    def act(
        self,
        lang_embeds: list,
        images: np.ndarray,
        image_mask: np.ndarray,
        states: np.ndarray,
        state_mask: np.ndarray,
        *,
        noise_seeds: Sequence[int],
    ) -> np.ndarray: ...


@dataclass(frozen=True)
class Settings:
    suite: str
    tasks: tuple[str, ...]
    episodes: int
    horizon: int
    max_steps: int
    envs: int
    seed: int
    camera_size: int
    videos_per_task: int


# ------------------------------------------------------------------------------------------------ validation
def check_horizon(horizon: int, chunk: int = PRED_HORIZON) -> None:
    if not 1 <= horizon <= chunk:
        raise UserError(
            f"--horizon {horizon}: the execution horizon must be between 1 and the predicted chunk length {chunk}"
        )


def check_episodes(episodes: int) -> None:
    if not 1 <= episodes <= suites.INIT_STATES_PER_TASK:
        raise UserError(
            f"--episodes {episodes}: each task has {suites.INIT_STATES_PER_TASK} init states and "
            f"episode i uses init state i, so 1..{suites.INIT_STATES_PER_TASK} episodes are possible"
        )


# ------------------------------------------------------------------------------------------------ episode records
def read_episodes(path: Path) -> list[dict]:
    """The complete records of ``episodes.jsonl``; an unparsable line (a write cut off by a kill) is dropped."""
    if not path.is_file():
        return []
    records = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            log.warning("%s line %d is incomplete (an interrupted write); it is ignored", path, n)
            continue
        if isinstance(rec, dict):
            records.append(rec)
    return records


def rewrite_episodes(path: Path, records: list[dict]) -> None:
    write_text(path, "".join(json.dumps(r) + "\n" for r in records))


def append_episode(path: Path, record: dict) -> None:
    """Append one JSON line and fsync, so a kill right after loses nothing that was reported."""
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:  # a full disk: name the file (a partial line is ignored when read back)
        raise OSError(e.errno, e.strerror, str(path)) from e


#: what decides an episode's outcome besides (task, init state); records made under other values are stale.
OUTCOME_SETTINGS = ("suite", "horizon", "max_steps", "seed", "camera_size")
#: ``identity``: the checkpoint's identity (an export's training identity from pipeline.json, else a hash of the
#: weights file; see :func:`checkpoint_identity`); ``code``: the evaluation code's fingerprint.
OUTCOME_INFO = ("identity", "step", "weights", "text_encoder", "vision_encoder", "control_frequency", "code")


def outcome_key(settings: Settings, info: dict, lang: Any = None) -> str:
    """Short hash of what decides an episode's outcome: the settings, the checkpoint's identity (not its path: a
    retrained model exported to the same folder gets another key), the evaluation code and the task's instruction
    embedding ``lang`` (so records of the other tasks stay valid when a task is added)."""
    values = {k: getattr(settings, k) for k in OUTCOME_SETTINGS} | {k: info.get(k) for k in OUTCOME_INFO}
    values["lang"] = None if lang is None else _digest(lang)
    return settings_key(values)


def _digest(value: Any) -> str:
    if hasattr(value, "detach"):
        value = value.detach().cpu().float().numpy()
    if isinstance(value, np.ndarray):
        return bytes_key(str(value.shape).encode() + np.ascontiguousarray(value).tobytes())
    return bytes_key(repr(value).encode())


def checkpoint_identity(checkpoint: str | os.PathLike, pipeline: dict, weights: str) -> str:
    """The identity of the evaluated weights: ``identity`` from pipeline.json for our exports (the training's
    identity, which with step and weights decides them); for checkpoints made elsewhere the sha256 of the weights
    file that is loaded."""
    if pipeline.get("identity"):
        return f"training:{pipeline['identity']}"
    from rdt.model.checkpoint import _weights_file, resolve_folder

    path = resolve_folder(checkpoint)
    return f"sha256:{file_digest(_weights_file(path, weights) if path.is_dir() else path)}"


def select_records(records: Sequence[dict], key: str | dict[str, str]) -> list[dict]:
    """The records made under ``key`` (one outcome key, or one per task), one per (task, init state) in first-seen
    order: the last one without a simulator error, else the last one. The ledger (episodes.jsonl) keeps records of
    every key; this is the view of one request."""

    def current(r: dict) -> bool:
        return r.get("key") == (key.get(r.get("task")) if isinstance(key, dict) else key)

    chosen: dict[tuple[str, int], dict] = {}
    for r in records:
        if not current(r):
            continue
        k = (r["task"], int(r["init_state"]))
        if k not in chosen or not r.get("error") or chosen[k].get("error"):
            chosen[k] = r
    return list(chosen.values())


def previous_records(out: Path, key: str | dict[str, str]) -> list[dict]:
    """The finished episodes of an earlier run into the same folder that this request can keep: made under the same
    outcome key (:func:`outcome_key`; ``key`` is one key, or one per task), without a simulator error (those run
    again), one per (task, init state).

    Records of other keys (other settings, checkpoint or code, tasks or init states not asked for now) stay in the
    ledger and are reused when asked for again under their key: a narrower request never deletes finished work. A
    line cut by a kill is removed (the file is rewritten with the complete records), so the next append starts on
    a line of its own."""
    path = out / EPISODES_FILE
    if not path.is_file():
        return []
    text = path.read_text()
    raw_lines = [ln for ln in text.splitlines() if ln.strip()]
    records = read_episodes(path)
    if len(records) != len(raw_lines) or not text.endswith("\n"):
        rewrite_episodes(path, records)
    chosen = select_records(records, key)
    other = len(records) - len(chosen)
    if other:
        log.info(
            "%s: %d record(s) of other settings, checkpoints, code, tasks or init states are kept in the ledger, "
            "not used by this request",
            path,
            other,
        )
    return [r for r in chosen if not r.get("error")]


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


# ------------------------------------------------------------------------------------------------ statistics
def success_counts(records: list[dict]) -> dict[str, Any]:
    """Counts and success rate over the episodes that ran without a simulator error."""
    errors = sum(1 for r in records if r.get("error"))
    valid = len(records) - errors
    successes = sum(1 for r in records if r.get("success") and not r.get("error"))
    ci = wilson_interval(successes, valid)
    return {
        "episodes": len(records),
        "successes": successes,
        "failures": valid - successes,
        "errors": errors,
        "success_rate": successes / valid if valid else None,
        "ci95": list(ci) if ci else None,
    }


class StateRangeCheck:
    """Compares observed unified states with the training state range (dataset_stat.json ``state_min/max``) on
    the state slots LIBERO fills; warns once when a value lies far outside it (a distribution shift)."""

    def __init__(self, stats: dict):
        idx = statevec.indices(mapping.STATE_SLOTS)
        self.names = list(mapping.STATE_SLOTS)
        self.idx = np.asarray(idx)
        lo = np.asarray(stats["state_min"], dtype=np.float64)[self.idx]
        hi = np.asarray(stats["state_max"], dtype=np.float64)[self.idx]
        margin = np.maximum(STATE_FAR_FRACTION * (hi - lo), STATE_FAR_ABS)
        self.lo, self.hi = lo - margin, hi + margin
        self.train_min, self.train_max = lo, hi
        self.checked = 0
        self.far = 0
        self.far_per_slot = np.zeros(len(idx), dtype=np.int64)
        self.warned = False

    def update(self, states: np.ndarray) -> None:
        v = np.asarray(states, dtype=np.float64)[:, self.idx]  # (B, S)
        outside = (v < self.lo) | (v > self.hi)
        self.checked += len(v)
        self.far += int(outside.any(axis=1).sum())
        self.far_per_slot += outside.sum(axis=0)
        if outside.any() and not self.warned:
            self.warned = True
            b, s = np.argwhere(outside)[0]
            log.warning(
                "observed state %s = %.4g is far outside the training range [%.4g, %.4g] "
                "(a distribution shift between the training data and the simulator; warned once, counted "
                "in summary.json state_range)",
                self.names[s],
                v[b, s],
                self.train_min[s],
                self.train_max[s],
            )

    def summary(self) -> dict:
        return {
            "states_checked": self.checked,
            "states_far_outside": self.far,
            "far_fraction": STATE_FAR_FRACTION,
            "far_abs": STATE_FAR_ABS,
            "far_per_slot": {n: int(c) for n, c in zip(self.names, self.far_per_slot) if c},
        }


# ------------------------------------------------------------------------------------------------ policy inputs
def policy_inputs(
    observations: Sequence[Observation], mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Observations -> (images (B,2,3,S,S,3) uint8, image_mask (B,2,3) bool, states (B,128) f32,
    state_mask (B,128) f32). History index 0 = t-1, 1 = t; the left-wrist slot is absent. ``mask``: the
    availability mask the checkpoint was trained with (default mapping.MASK); state slots outside it are 0."""
    b = len(observations)
    size = observations[0].images.shape[1]
    images = np.zeros((b, IMG_HISTORY, len(mapping.CAMERA_SLOTS), size, size, 3), dtype=np.uint8)
    valid = np.zeros((b, IMG_HISTORY, len(mapping.CAMERA_SLOTS)), dtype=bool)
    slots = [mapping.CAMERA_SLOTS.index(s) for s in PRESENT_SLOTS]
    for row, obs in enumerate(observations):
        for k, j in enumerate(slots):
            images[row, 1, j] = obs.images[k]
            valid[row, 1, j] = True
            if obs.prev_images is not None:
                images[row, 0, j] = obs.prev_images[k]
                valid[row, 0, j] = True
    mask = mapping.MASK if mask is None else np.asarray(mask, dtype=np.float32)
    states = np.stack([obs.state for obs in observations]).astype(np.float32) * mask
    state_mask = np.broadcast_to(mask, states.shape).astype(np.float32)
    return images, valid, states, state_mask


def noise_seed(seed: int, job: Job, call: int) -> int:
    """The sampling-noise seed of an episode's ``call``-th policy call (0, 1, ...): a function of the evaluation
    seed, the task, the init state and the call alone, so an episode samples the same noise whatever it is batched
    with, on whichever worker, at whichever horizon run first."""
    return int(settings_key([seed, job.task.suite, job.task.name, job.init_state, call]), 16) & (2**63 - 1)


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


# ------------------------------------------------------------------------------------------------ the run
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
    if planner is None:
        check_horizon(settings.horizon)
        missing = [t.name for t in suites.select_tasks(settings.suite, list(settings.tasks)) if t.name not in lang]
        if missing:
            raise UserError(f"no instruction embedding for task(s) {missing}")
    info = dict(info or {})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out, LOCK_FILE, "evaluating into this folder"):
        return _logged(policy, settings, out, lang, info, stats, sim_factory, planner, summary_name)


def _logged(policy, settings: Settings, out: Path, lang, info: dict, stats, sim_factory, planner, summary_name) -> dict:
    """The evaluation with its log file (``out/evaluate.log``) attached to this module's logger."""
    handler = logging.FileHandler(out / LOG_FILE)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)  # the run log gets every episode, whatever the root logger's level
    try:
        return _evaluate(
            policy,
            settings,
            out,
            lang,
            info,
            stats,
            sim_factory or partial(LiberoSimulator, settings.camera_size),
            planner,
            summary_name,
        )
    finally:
        log.removeHandler(handler)
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
    out: Path,
    lang: dict,
    info: dict,
    stats: dict | None,
    sim_factory,
    planner,
    summary_name,
) -> dict:
    tasks = suites.select_tasks(settings.suite, list(settings.tasks))
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


# ------------------------------------------------------------------------------------------------ command line
def add_arguments(p: argparse.ArgumentParser) -> None:
    # over 60 lines on purpose: one flat list of the command's flags in --help order; splitting it would scatter
    # the command line
    p.add_argument(
        "--checkpoint",
        required=True,
        metavar="DIR",
        help="checkpoint folder (ours: config.json, model.safetensors, ema/, pipeline.json; or a released "
        "RDT folder / weights file / cached hub id)",
    )
    p.add_argument(
        "--lang",
        metavar="FILE",
        help="lang.safetensors with an embedding for every evaluated task's instruction "
        "(python -m rdt encode --instructions-from-tasks SUITE ...); default: the tasks' "
        "instructions are encoded here with the checkpoint's text encoder into --out/lang.safetensors",
    )
    p.add_argument(
        "--stats",
        metavar="FILE",
        help="dataset_stat.json of the training data, for checkpoints made elsewhere (our exports carry "
        "theirs in pipeline.json): observed states far outside its state range are warned about "
        "(once) and counted in summary.json state_range (without statistics: no check)",
    )
    p.add_argument(
        "--horizon",
        required=True,
        type=int,
        nargs="+",
        metavar="H",
        help="execution horizon(s): actions executed from each predicted 64-step chunk before re-planning "
        "(1..64); with several, each is evaluated into --out/h<H>/ with the model loaded once",
    )
    p.add_argument(
        "--suite",
        metavar="S",
        help="LIBERO suite: "
        + ", ".join(suites.suite_names())
        + " (default: the suite the checkpoint was trained on, from pipeline.json)",
    )
    p.add_argument(
        "--tasks",
        nargs="+",
        metavar="T",
        help="task names, indices or shell patterns of the suite, or 'all' (default: the tasks the "
        "checkpoint was trained on when --suite is theirs, from pipeline.json; else all)",
    )
    p.add_argument(
        "--episodes",
        type=int,
        default=DEFAULT_EPISODES,
        metavar="N",
        help=f"episodes per task; episode i starts from init state i (1..{suites.INIT_STATES_PER_TASK}; "
        f"default {DEFAULT_EPISODES}, the LIBERO convention)",
    )
    p.add_argument(
        "--max-steps",
        type=int,
        metavar="M",
        help="policy steps per episode (default: the suite's published limit, "
        + ", ".join(f"{k} {v}" for k, v in suites.MAX_STEPS.items())
        + ")",
    )
    p.add_argument("--envs", type=int, default=1, metavar="K", help="parallel simulator processes (default 1)")
    p.add_argument(
        "--seed", type=int, default=0, help="env.seed for every episode and the policy's noise seed (default 0)"
    )
    p.add_argument(
        "--camera-size",
        type=int,
        metavar="PX",
        help=f"camera resolution (default: pipeline.json image_size, else {DEFAULT_CAMERA_SIZE})",
    )
    p.add_argument(
        "--videos-per-task",
        type=int,
        default=1,
        metavar="V",
        help="record the first V episodes of each task as MP4 (default 1; 0 = none)",
    )
    p.add_argument(
        "--weights",
        choices=["ema", "model"],
        help="which weights to load (default: ema when the checkpoint has them, else model)",
    )
    p.add_argument(
        "--text-encoder",
        metavar="NAME",
        help="text encoder the checkpoint was trained with (default: from pipeline.json)",
    )
    p.add_argument(
        "--vision-encoder",
        metavar="NAME",
        help="vision encoder the checkpoint was trained with (default: from pipeline.json)",
    )
    p.add_argument(
        "--control-frequency",
        type=int,
        metavar="HZ",
        help="control frequency given to the model (default: from pipeline.json)",
    )
    p.add_argument("--device", help="torch device for the policy (default: cuda if available, else cpu)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (one per checkpoint x horizon)")
    add_summary_name(p)


def add_summary_name(p: argparse.ArgumentParser) -> None:
    """--summary-name, shared with rdt replay: the workflow names each request's summary by its identity."""
    p.add_argument(
        "--summary-name",
        default=SUMMARY_FILE,
        metavar="NAME",
        help=f"file name of the summary in --out (default {SUMMARY_FILE}; the workflow writes summary-<key>.json, "
        "the key being the request's identity: settings, checkpoint, code)",
    )


def trained_suite_and_tasks(checkpoint: str, suite: str | None, tasks: list[str] | None) -> tuple[str, list[str]]:
    """``--suite``/``--tasks`` with their defaults: the suite and tasks the checkpoint's pipeline.json says it was
    trained on (the tasks only when the suite is that one; otherwise all tasks)."""
    try:
        trained = read_json(Path(checkpoint) / "pipeline.json")
    except UserError:  # none (a checkpoint made elsewhere) or unreadable: no defaults from it
        trained = {}
    if suite is None:
        suite = trained.get("suite")
        if not suite:
            raise UserError(
                f"--suite is not given and {checkpoint} has no pipeline.json naming the suite it was "
                "trained on (a checkpoint made elsewhere): pass --suite S [--tasks ...]"
            )
    if tasks is None:
        tasks = list(trained.get("tasks") or ["all"]) if suite == trained.get("suite") else ["all"]
    return suite, tasks


def _check_positive(value: int | None, flag: str) -> None:
    if value is not None and value < 1:
        raise UserError(f"{flag} {value}: expected a positive integer")


def _check_request(args: argparse.Namespace) -> list[int]:
    """The distinct ``--horizon`` values, once every flag that can be checked without the model is checked."""
    horizons = list(dict.fromkeys(args.horizon))
    for h in horizons:
        check_horizon(h)
    check_episodes(args.episodes)
    _check_positive(args.max_steps, "--max-steps")
    _check_positive(args.envs, "--envs")
    _check_positive(args.camera_size, "--camera-size")
    if args.videos_per_task < 0:
        raise UserError(f"--videos-per-task {args.videos_per_task}: expected 0 or more")
    return horizons


def _load_policy(args: argparse.Namespace):
    """The checkpoint's policy with the flags' overrides; its weights are checked finite."""
    from rdt.policy import Policy

    policy = Policy.from_checkpoint(
        args.checkpoint,
        vision_encoder=args.vision_encoder,
        text_encoder=args.text_encoder,
        control_frequency=args.control_frequency,
        weights=args.weights,
        device=args.device,
        seed=args.seed,
    )
    from rdt.model.verify import check_finite

    check_finite(policy.runner.state_dict(), f"{args.checkpoint} ({policy.pipeline.get('weights')} weights)")
    return policy


def _training_stats(args: argparse.Namespace, pipeline: dict) -> dict | None:
    """The dataset statistics for the state-range check. They reach evaluation one way: from the export's
    pipeline.json (the entry it was trained with), or --stats for a checkpoint made elsewhere; never both."""
    from rdt.data.stats import load_entry

    if args.stats and pipeline.get("dataset_stat"):
        raise UserError(
            f"--stats {args.stats}: checkpoint {args.checkpoint} carries the statistics it was trained "
            "with (pipeline.json dataset_stat); --stats is for checkpoints made elsewhere, leave it out"
        )
    return load_entry(args.stats) if args.stats else pipeline.get("dataset_stat")


def _run_info(args: argparse.Namespace, policy, stats: dict | None) -> dict:
    """The checkpoint, device and input facts recorded with every episode and in summary.json."""
    pipeline = policy.pipeline
    return {
        "checkpoint": str(Path(args.checkpoint).resolve()) if Path(args.checkpoint).exists() else args.checkpoint,
        "step": pipeline.get("step"),
        "device": str(policy.device),
        "weights": pipeline.get("weights"),
        "text_encoder": policy.text_encoder,
        "vision_encoder": policy.vision.name,
        "control_frequency": policy.control_frequency,
        "lang": str(args.lang),
        "stats": args.stats or ("pipeline.json" if stats else None),
        "identity": checkpoint_identity(args.checkpoint, pipeline, pipeline.get("weights") or "model"),
        "code": fingerprint("rdt.evaluate"),
    }


def settings_from_args(args: argparse.Namespace, tasks: list, horizon: int, pipeline: dict) -> Settings:
    """The settings of one horizon's evaluation (or of a replay: horizon 0, no pipeline.json), the flags' defaults
    filled in."""
    return Settings(
        suite=args.suite,
        tasks=tuple(t.name for t in tasks),
        episodes=args.episodes,
        horizon=horizon,
        max_steps=args.max_steps or suites.MAX_STEPS[args.suite],
        envs=args.envs,
        seed=args.seed,
        camera_size=args.camera_size or int(pipeline.get("image_size") or DEFAULT_CAMERA_SIZE),
        videos_per_task=args.videos_per_task,
    )


def main(args: argparse.Namespace) -> int:
    setup_logging()  # time, level and logger name on each record
    # everything that can be wrong with the request is checked before a model or simulator is loaded
    horizons = _check_request(args)
    args.suite, args.tasks = trained_suite_and_tasks(args.checkpoint, args.suite, args.tasks)
    tasks = suites.select_tasks(args.suite, args.tasks)
    from rdt.encoders import check_text_fits
    from rdt.lang import LanguageTable

    table = LanguageTable.load(args.lang) if args.lang else None
    lang = {t.name: table.get(t.language) for t in tasks} if table is not None else None
    policy = _load_policy(args)
    if table is None:  # no --lang: encode the tasks' instructions once with the checkpoint's text encoder
        args.lang = str(encode_task_language(tasks, policy.text_encoder, Path(args.out), policy.device))
        table = LanguageTable.load(args.lang)
        lang = {t.name: table.get(t.language) for t in tasks}
    table.check_encoder(policy.text_encoder)
    cfg = policy.runner.config
    check_text_fits(table.hidden_size, cfg, args.lang, f"checkpoint {args.checkpoint}")
    for h in horizons:
        check_horizon(h, cfg.pred_horizon)
    stats = _training_stats(args, policy.pipeline)
    info = _run_info(args, policy, stats)
    for h in horizons:
        out = horizon_out(Path(args.out), h, horizons)
        summary = evaluate(
            policy,
            settings_from_args(args, tasks, h, policy.pipeline),
            out,
            lang,
            info=info,
            stats=stats,
            summary_name=args.summary_name,
        )
        o = summary["overall"]
        rate = "n/a" if o["success_rate"] is None else f"{100 * o['success_rate']:.1f}%"
        print(
            f"{args.suite} H={h}: {o['successes']}/{o['episodes'] - o['errors']} successes ({rate}), "
            f"{o['errors']} errors -> {out / args.summary_name}"
        )
    return 0


def horizon_out(out: Path, horizon: int, horizons: list[int]) -> Path:
    """Where one horizon's results go: ``--out`` itself for one horizon, ``--out/h<H>`` for several."""
    return out if len(horizons) == 1 else out / layout.horizon_name(horizon)


def encode_task_language(tasks: Sequence[suites.Task], text_encoder: str, out: Path, device: Any) -> Path:
    """Embeddings of the tasks' instructions with ``text_encoder`` into ``out/lang.safetensors`` (reused when it
    holds them all from the same encoder), the encoder freed afterwards."""
    import torch

    from rdt.encoders import TINY, load_text_encoder
    from rdt.lang import LanguageTable, encode_instructions

    path = out / "lang.safetensors"
    wanted = [t.language for t in tasks]
    if path.is_file():
        try:
            table = LanguageTable.load(path)
            table.check_encoder(text_encoder)
            if all(w in table for w in wanted):
                return path
        except UserError:
            pass
    out.mkdir(parents=True, exist_ok=True)
    dtype = torch.float32 if text_encoder == TINY else torch.bfloat16  # as `python -m rdt encode` does
    encoder = load_text_encoder(text_encoder, device=device, dtype=dtype)
    log.info("encoding %d task instruction(s) with %s into %s", len(set(wanted)), text_encoder, path)
    encode_instructions(wanted, encoder, path)
    del encoder
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return path
