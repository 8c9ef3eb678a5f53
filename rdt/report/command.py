"""Figures and tables of a set of runs: what the workflow's report shows.

Each ``--results`` folder is one run (or one evaluation-only checkpoint), laid out as the workflow writes it:
``settings.json`` (the settings document of rdt.plan: the run's effective settings and its training folder,
read with ``rdt.plan.read_settings``), the training folder's ``metrics.csv`` (columns step, loss, lr, grad_norm,
sample_mse; ``train/`` inside the run folder when the document names none) and
``eval/step-<S>/h<H>/{summary.json, episodes.jsonl, videos/}``. Written into ``--out`` (one folder,
replaced atomically): success_vs_step.png (success rate vs training step, one line per execution horizon with 95%
Wilson bands, one panel per run), heatmap_last.png and heatmap_best.png (success per task x horizon at the last and
the best checkpoint), training.png (loss, learning rate and sample MSE vs step), results.csv (every result: run,
step, horizon, task or "overall", counts, rate, interval), audit.csv (each setting of each run against the RDT-1B
recipe, rdt/audit.py), provenance.json (settings, code fingerprints, package versions, device, per result),
rollouts.png (frames of successful and failed rollouts), videos/ (those rollouts' videos) and summary.html: one
self-contained page that answers the user's questions first (headline success per run and horizon at the last
checkpoint with 95% intervals, paired comparisons of horizons and of runs on the same (task, init state) pairs with
a verdict line each, the honest "best" checkpoint chosen on even init states and reported on odd ones, the audit with
deviations highlighted, the evaluation plan's cost, state-range warnings per evaluation, per-task and per-episode
tables, the rollout videos playing in the page, and every figure). Statistics: rdt/report_stats.py.

example:
  python -m rdt report --results results/current results/improved --out results/report
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from rdt.audit import COLUMNS as AUDIT_COLUMNS
from rdt.errors import UserError
from rdt.report.collect import pick_videos, read_run
from rdt.report.figures import draw
from rdt.report.names import AUDIT_TABLE, FIGURES, PROVENANCE, RESULTS_TABLE, SUMMARY, VIDEOS, video_file
from rdt.report.page import summary_html
from rdt.report.tables import RESULT_COLUMNS, audit_rows, csv_text, provenance, result_rows
from rdt.utils.atomic import atomic_dir
from rdt.utils.progress import track


def write_report(result_dirs: list[Path], out: Path, videos_per_run: int = 4) -> dict[str, Any]:
    """Read the runs in ``result_dirs`` and write the report folder ``out`` (replaced atomically): the figures of
    rdt.report.names.FIGURES, the tables, provenance, the chosen rollout videos and the summary page."""
    runs = [read_run(Path(d)) for d in result_dirs]
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise UserError(f"--results: run folders must have distinct names, got {names}")
    empty = [r.name for r in runs if not r.results]
    if empty:
        raise UserError(f"--results: no evaluation results (eval/step-<S>/h<H>/summary.json) in run(s) {empty}")
    results, audits = result_rows(runs), audit_rows(runs)
    videos = pick_videos(runs, videos_per_run)
    with atomic_dir(out) as tmp:
        for figure in track(FIGURES, desc="report", unit="figure"):
            draw(figure, runs, videos, tmp / figure.file)
        (tmp / RESULTS_TABLE).write_text(csv_text(results, RESULT_COLUMNS))
        (tmp / AUDIT_TABLE).write_text(csv_text(audits, ("run",) + AUDIT_COLUMNS))
        (tmp / PROVENANCE).write_text(json.dumps(provenance(runs), indent=2) + "\n")
        (tmp / VIDEOS).mkdir()
        for run, video in videos:
            shutil.copy2(video, tmp / VIDEOS / video_file(run, video))
        (tmp / SUMMARY).write_text(summary_html(runs, tmp, audits, videos))
    return {"runs": names, "results": len(results), "deviations": sum(r["flag"] == "DEVIATES" for r in audits)}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--results",
        nargs="+",
        required=True,
        metavar="DIR",
        help="run folders (results/<run>) holding eval/step-<S>/h<H>/summary.json",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="report folder to write (replaced atomically)")
    p.add_argument(
        "--videos",
        type=int,
        default=4,
        metavar="N",
        help="rollout videos shown per run, from its last checkpoint (default 4)",
    )


def main(args: argparse.Namespace) -> int:
    if args.videos < 0:
        raise UserError(f"--videos {args.videos}: expected a number >= 0")
    info = write_report(args.results, Path(args.out), args.videos)
    print(
        f"report for {', '.join(info['runs'])}: {info['results']} result rows, "
        f"{info['deviations']} settings deviate from the RDT-1B recipe -> {args.out}"
    )
    return 0
