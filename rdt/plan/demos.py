"""Which generation of the scripted expert's demos a run's data is made from: an early cutoff for expert-code edits.

A generation folder ``cache/demos/<key>/`` is named by the demo settings and the expert's code fingerprint (which
covers the simulator wrapper, rdt/libero/env.py, that evaluation runs too). ``rdt expert`` records in its
``expert_summary.json`` the fingerprint it ran with, a digest of the demo files it wrote and when it finished.

An edit of that code names a new generation, and the demos are generated again; what is made from them (the
training file, its statistics and language, the trainings) is keyed by the generation they *use*: the earliest
generation of the same settings whose demos are identical to the current code's. So an edit that leaves the demos
byte-identical reruns demo generation and evaluation only, and one that changes them gives new data keys, and
everything downstream runs again. The content is only known once the current code's generation exists; until then,
when an earlier generation of the same settings exists, ``wait`` is asked for it (in the workflow: the Snakemake
checkpoint ``expert_demos``, which defers the jobs that depend on it until the demos are generated). Without an
earlier generation there is nothing to compare with, and the current code's generation is the one used.

Why not Snakemake alone: its rerun decisions are by settings, code and file times, never by content, so any
regenerated input reruns everything after it; and a content key in the data key keeps that decision in paths, so
it holds without ``.snakemake/`` too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rdt.layout import EXPERT_SUMMARY
from rdt.plan.keys import key_of


@dataclass(frozen=True)
class Generation:
    """One finished generation: its folder, the expert code it ran with, its demos' digest and when it finished."""

    folder: Path
    code: str
    content: str
    finished: str


def generation(folder: Path) -> Generation | None:
    """The record of a finished generation folder; None for a missing folder or one written before the records."""
    try:
        record = json.loads((folder / EXPERT_SUMMARY).read_text())
    except (OSError, ValueError):
        return None
    if not all(isinstance(record.get(k), str) for k in ("code", "content", "finished")):
        return None
    return Generation(folder, record["code"], record["content"], record["finished"])


def generations(root: Path, settings: dict) -> dict[str, Generation]:
    """Finished generations of ``settings`` (any code) under ``root`` (the results' cache/demos), by folder name: a
    folder is one when its name is the key of these settings with the code it records."""
    found = {}
    if root.is_dir():
        for folder in root.iterdir():
            g = generation(folder)
            if g is not None and key_of({**settings, "code": g.code}) == folder.name:
                found[folder.name] = g
    return found


def settings_used(root: Path, settings: dict, wait: Callable[[str], None]) -> dict:
    """The demo settings (the current ones with the ``code`` of the generation used) whose folder a run's data is
    made from: the earliest finished generation with the current code's content. ``wait(key)`` is called when that
    is undecided, before the current generation exists; it returns once it does, or raises (Snakemake's
    IncompleteCheckpointException); when it returns without it, the current generation is predicted."""
    current = key_of(settings)
    found = generations(root, settings)
    if current not in found:
        if not found:
            return settings  # the first generation of these settings: nothing to compare with
        wait(current)
        found = generations(root, settings)
        if current not in found:
            return settings
    content = found[current].content
    first = min((g for g in found.values() if g.content == content), key=lambda g: (g.finished, g.folder.name))
    return {**settings, "code": first.code}
