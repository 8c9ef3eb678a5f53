"""The results layout, in one place: where a training folder keeps its exports and a run folder its evaluations.

    <training folder>/export/step-<S>/                  an evaluation checkpoint (rdt train)
    <run folder>/eval/step-<S>/h<H>/summary.json        one evaluation (rdt evaluate), read by rdt report

The plan (rdt/plan.py) and the workflow's rules build their paths here, the trainer writes and the evaluator and the
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
SUMMARY = "summary.json"
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


def summary_path(run_folder: P, step: int | str, horizon: int | str) -> P:
    """``<run_folder>/eval/step-<step>/h<horizon>/summary.json``."""
    return _join(eval_dir(run_folder, step, horizon), SUMMARY)


def evaluations(run_folder: Path) -> list[tuple[int, int, Path]]:
    """The evaluation folders of a run folder that hold a summary, as (step, horizon, folder), in order."""
    found = []
    for step_dir in Path(run_folder, EVAL).glob("step-*"):
        m = STEP_DIR.match(step_dir.name)
        if not m:
            continue
        for h_dir in step_dir.glob("h*"):
            mh = HORIZON_DIR.match(h_dir.name)
            if mh and (h_dir / SUMMARY).is_file():
                found.append((int(m.group(1)), int(mh.group(1)), h_dir))
    return sorted(found)
