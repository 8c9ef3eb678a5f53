"""The results layout, in one place: where a training folder keeps its exports and a run folder its evaluations.

    <training folder>/export/step-<S>/                  an evaluation checkpoint (rdt train)
    <run folder>/eval/step-<S>/h<H>/summary-<key>.json  one evaluation request (rdt evaluate), read by rdt report;
                                                        <key> is the request's identity (rdt.plan.Plan.eval_key)
    <run folder>/eval/step-<S>/h<H>/episodes.jsonl      the ledger of every episode run there, under any identity

The plan (rdt/plan/) and the workflow's rules build their paths here, the trainer writes and the evaluator and the
report read by the same names. The path functions take ``str`` (also Snakemake wildcard patterns such as
``"{step}"``) and return ``str``, or take a ``Path`` and return a ``Path``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TypeVar

EXPORT = "export"
EVAL = "eval"
SUMMARY = "summary.json"  # the name without a request key (rdt evaluate run by hand)
SUMMARY_GLOB = "summary*.json"
STEP_DIR = re.compile(r"^step-(\d+)$")
HORIZON_DIR = re.compile(r"^h(\d+)$")

P = TypeVar("P", str, Path)


def step_name(step: int | str) -> str:
    return f"step-{step}"


def horizon_name(horizon: int | str) -> str:
    return f"h{horizon}"


def _join(base: P, *parts: str) -> P:
    if isinstance(base, Path):
        return base.joinpath(*parts)
    return "/".join([os.fspath(base).rstrip("/"), *parts])


def export_dir(train_folder: P, step: int | str) -> P:
    """``<train_folder>/export/step-<step>``."""
    return _join(train_folder, EXPORT, step_name(step))


def eval_dir(run_folder: P, step: int | str, horizon: int | str) -> P:
    """``<run_folder>/eval/step-<step>/h<horizon>``."""
    return _join(run_folder, EVAL, step_name(step), horizon_name(horizon))


def summary_name(key: str | None = None) -> str:
    """``summary-<key>.json`` (the workflow: the name changes with the request's identity, so a changed setting,
    checkpoint or code is a missing file, whatever Snakemake remembers), or ``summary.json``."""
    return SUMMARY if key is None else f"summary-{key}.json"


def summary_path(run_folder: P, step: int | str, horizon: int | str, key: str | None = None) -> P:
    """``<run_folder>/eval/step-<step>/h<horizon>/summary[-<key>].json``."""
    return _join(eval_dir(run_folder, step, horizon), summary_name(key))


def evaluations(run_folder: Path) -> list[tuple[int, int, Path]]:
    """The evaluation summaries found in a run folder, as (step, horizon, summary file), in order; where a folder
    holds several (requests of other identities), the newest."""
    found = []
    for step_dir in Path(run_folder, EVAL).glob("step-*"):
        m = STEP_DIR.match(step_dir.name)
        if not m:
            continue
        for h_dir in step_dir.glob("h*"):
            mh = HORIZON_DIR.match(h_dir.name)
            summaries = sorted(h_dir.glob(SUMMARY_GLOB), key=lambda f: f.stat().st_mtime) if mh else []
            if summaries:
                found.append((int(m.group(1)), int(mh.group(1)), summaries[-1]))
    return sorted(found)
