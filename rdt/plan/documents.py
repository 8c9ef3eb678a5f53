"""The settings document of a target, ``results/<target>/settings.json``: what the report audits and records as
provenance, and its only way to the training folder and to the evaluations of the current plan.

:func:`settings_document` builds it from a plan (the workflow's ``target_settings`` rule writes it with
:func:`write_settings`); :func:`read_settings` and :func:`train_folder` are what the report and the results bundles
read it with.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from rdt import layout
from rdt.errors import UserError
from rdt.plan.keys import code_fingerprint
from rdt.utils.atomic import write_text
from rdt.utils.files import read_json

SETTINGS_FORMAT = "rdt-settings/1"
SETTINGS_FILE = layout.SETTINGS_FILE


def settings_document(plan, target: str) -> dict:
    """``results/<target>/settings.json`` of a plan's target: its horizons, evaluation settings, evaluation code,
    evaluation plan (cost) and exactly the evaluations of the current plan, each by its identity-named summary (the
    report reads these); then what its kind adds (``Target.document_fields``)."""
    folder = plan.run_dir(target)
    doc = {
        "format": SETTINGS_FORMAT,
        "target": target,
        "exec_horizons": plan.horizons(target),
        "eval": plan.eval_settings(target),
        "code": {"evaluate": code_fingerprint("evaluate")},
        "eval_plan": json.loads(json.dumps(plan.eval_cost(target))),
        "evaluations": [
            {"step": s, "horizon": h, "summary": os.path.relpath(plan.summary_path(target, s, h), folder)}
            for s in plan.eval_steps(target)
            for h in plan.horizons(target, s)
        ],
    }
    doc.update(plan.target(target).document_fields())
    return doc


def write_settings(path: str | os.PathLike, document: dict) -> None:
    write_text(path, json.dumps(document, indent=2) + "\n")


def write_marker(path: str | os.PathLike) -> None:
    """Write a key marker (rdt.layout.run_marker, settings_marker, report_marker): an empty file named by the key of
    what decides a file whose inputs alone cannot show a change. Snakemake sees a changed key as a missing input, with
    or without its metadata; the folder's other markers of the same kind are removed, so that going back to an
    earlier key is a missing file again, not an old one."""
    path = Path(path)
    kind = path.name.rsplit("-", 1)[0] + "-"  # .run-, .settings- or .report-
    write_text(path, "")
    for other in path.parent.glob(f"{kind}*"):
        if other != path:
            other.unlink(missing_ok=True)


def read_settings(folder: str | os.PathLike) -> dict | None:
    """The settings document of a target folder (None when it has none); ``train_folder`` is resolved to a path.
    A document of another format is a UserError naming the file."""
    path = layout.settings_file(Path(folder))
    if not path.is_file():
        return None
    doc = read_json(path)
    if not isinstance(doc, dict) or doc.get("format") != SETTINGS_FORMAT:
        raise UserError(
            f"{path}: not a settings document of format {SETTINGS_FORMAT!r} (written by the workflow's "
            "target_settings rule from rdt.plan.Plan.settings_document); rerun the workflow"
        )
    if doc.get("train_folder"):
        doc["train_folder"] = str(Path(folder) / doc["train_folder"])
    return doc


def train_folder(folder: str | os.PathLike, document: dict | None) -> Path:
    """The training folder of a target (``train/`` inside it when the document names none)."""
    if document and document.get("train_folder"):
        return Path(document["train_folder"])
    return layout.own_train_dir(Path(folder))
