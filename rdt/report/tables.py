"""The report's tables and provenance: every result (results.csv), the configuration audit of every run (audit.csv,
rows from rdt/audit.py) and provenance.json. File names: rdt/report/names.py."""

from __future__ import annotations

import csv
import io
import os
import platform
from pathlib import Path
from typing import Any

from rdt import fingerprint, plan
from rdt.audit import audit, checkpoint_audit
from rdt.report.collect import Run, is_replay
from rdt.utils.versions import package_versions, source_commit

RESULT_COLUMNS = (
    "run",
    "step",
    "horizon",
    "task",
    "episodes",
    "successes",
    "failures",
    "errors",
    "success_rate",
    "ci95_low",
    "ci95_high",
)
STAGE_MODULES = tuple(plan.STAGE_MODULES.values())


def result_rows(runs: list[Run]) -> list[dict[str, Any]]:
    rows = []
    for run in runs:
        for r in run.results:
            scopes = [("overall", r.overall)] + [(t, r.counts(t)) for t in sorted(r.summary["tasks"])]
            for task, c in scopes:
                ci = c.get("ci95") or [None, None]
                rows.append(
                    {
                        "run": run.name,
                        "step": r.step,
                        "horizon": r.horizon,
                        "task": task,
                        "episodes": c["episodes"],
                        "successes": c["successes"],
                        "failures": c["failures"],
                        "errors": c["errors"],
                        "success_rate": c["success_rate"],
                        "ci95_low": ci[0],
                        "ci95_high": ci[1],
                    }
                )
    return rows


def audit_rows(runs: list[Run]) -> list[dict[str, Any]]:
    """Audit rows of every run (rdt/audit.py); an evaluation-only checkpoint gets its encoder and horizon rows
    from what its evaluation recorded."""
    rows = []
    for run in runs:
        if is_replay(run):
            continue
        s = run.settings or {}
        horizons = s.get("exec_horizons", run.horizons)
        if "train" in s:
            workflow = s.get("workflow") or {}
            found = audit(
                s["train"], s.get("gpus", 0), horizons, s.get("max_steps"), workflow.get("data"), s.get("demos")
            )
        elif run.results:
            found = checkpoint_audit(run.results[-1].summary.get("info") or {}, horizons)
        else:
            continue
        rows += [{"run": run.name, **row.as_dict()} for row in found]
    return rows


def csv_text(rows: list[dict[str, Any]], columns: tuple[str, ...] | list[str]) -> str:
    """``rows`` as CSV with a header of ``columns`` (None written as an empty cell)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: ("" if row.get(k) is None else row[k]) for k in columns})
    return buf.getvalue()


def relative_paths(value: Any, base: Path) -> Any:
    """``value`` with every absolute path inside ``base`` written relative to it (so a moved or copied results
    folder's provenance stays true); other strings, e.g. a Hugging Face cache path, are kept as they are."""
    if isinstance(value, dict):
        return {k: relative_paths(v, base) for k, v in value.items()}
    if isinstance(value, list):
        return [relative_paths(v, base) for v in value]
    if isinstance(value, str) and os.path.isabs(value):
        path = Path(value)
        if path == base or base in path.parents:
            return os.path.relpath(path, base)
    return value


def provenance(runs: list[Run], base: Path | None = None) -> dict[str, Any]:
    """What the report was made from and with: the source commit, package versions, code fingerprints and machine,
    and per run its settings and per result its checkpoint, device and settings. Paths inside ``base`` (default:
    the working directory, the repository root for the workflow) are written relative to it."""
    versions = package_versions()
    code = {m: fingerprint.fingerprint(m) for m in STAGE_MODULES if fingerprint.closure(m)}
    doc = {
        "report": {
            "source": source_commit(),
            "versions": versions,
            "code_fingerprints": code,
            "machine": platform.platform(),
            "paths_relative_to": "the working directory the report was made in",
        },
        "runs": {
            run.name: {
                "settings": run.settings,
                "results": [
                    {
                        "step": r.step,
                        "horizon": r.horizon,
                        "checkpoint": r.summary.get("checkpoint"),
                        "device": r.summary.get("device"),
                        "versions": r.summary.get("versions"),
                        "settings": r.summary.get("settings"),
                        "info": r.summary.get("info"),
                        "overall": r.overall,
                    }
                    for r in run.results
                ],
            }
            for run in runs
        },
    }
    return relative_paths(doc, (base or Path.cwd()).resolve())
