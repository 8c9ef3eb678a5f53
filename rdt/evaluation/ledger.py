"""The evaluation folder and its ledger: which files an evaluation writes there, episodes.jsonl (one record per
finished episode, appended and fsynced; read back, and rewritten only to drop a line cut by a kill), the outcome key
and checkpoint identity that decide which records a request may keep, and the success counts over records.

    OUT/episodes.jsonl     the ledger: the records of every request run into OUT, under any outcome key
    OUT/summary.json       one request's summary (summary-<key>.json with --summary-name, as the workflow names it)
    OUT/evaluate.log       the run's log
    OUT/videos/            <task>__init<i>__<success|failure>.mp4 (rdt.video.video_name)
    OUT/.evaluate.lock     held by the evaluation (or replay) that writes OUT

Only numpy, the standard library and rdt's small helpers: the report reads the ledger without importing torch.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rdt import layout
from rdt.report_stats import wilson  # the one Wilson interval (also the report's)
from rdt.utils.atomic import write_text
from rdt.utils.hashing import bytes_key, file_sha256, settings_key

if TYPE_CHECKING:
    from rdt.evaluation.settings import Settings

EPISODES_FILE = "episodes.jsonl"
SUMMARY_FILE = layout.SUMMARY  # without --summary-name
LOG_FILE = "evaluate.log"
LOCK_FILE = ".evaluate.lock"  # one evaluation at a time writes into a folder
VIDEO_DIR = "videos"

log = logging.getLogger(__name__)


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
    return f"sha256:{file_sha256(_weights_file(path, weights) if path.is_dir() else path)}"


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


def success_counts(records: list[dict]) -> dict[str, Any]:
    """Counts and success rate over the episodes that ran without a simulator error."""
    errors = sum(1 for r in records if r.get("error"))
    valid = len(records) - errors
    successes = sum(1 for r in records if r.get("success") and not r.get("error"))
    ci = wilson(successes, valid)
    return {
        "episodes": len(records),
        "successes": successes,
        "failures": valid - successes,
        "errors": errors,
        "success_rate": successes / valid if valid else None,
        "ci95": list(ci) if ci else None,
    }
