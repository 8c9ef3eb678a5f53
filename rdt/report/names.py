"""The files of a report folder (``python -m rdt report --out DIR``), named in this one place.

The command writes them (rdt/report/command.py), the summary page embeds and links them (rdt/report/page.py), the
workflow's report rule declares them for ``snakemake --report`` (workflow/rules/report.smk and common.smk import this
module) and the tests check them. Adding a figure is one entry in :data:`FIGURES` (with its drawing function in
rdt/report/figures.py); the command, the page and the workflow rule follow it. Only the standard library: the
Snakefile imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: the self-contained summary page (figures and, within a size budget, videos embedded)
SUMMARY = "summary.html"
#: every result: run, step, horizon, task or "overall", counts, rate, 95% interval (rdt.report.tables)
RESULTS_TABLE = "results.csv"
#: each setting of each run against the RDT-1B recipe (rdt/audit.py)
AUDIT_TABLE = "audit.csv"
#: settings, code fingerprints, package versions and device, per result
PROVENANCE = "provenance.json"
#: the folder of the rollout videos the page shows (named by :func:`video_file`)
VIDEOS = "videos"


@dataclass(frozen=True)
class Figure:
    """One PNG of the report: its file, how it is drawn, and how the page and ``snakemake --report`` show it."""

    file: str  # in the report folder
    draw: str  # the function of rdt.report.figures that draws it, called as draw(runs, videos, path)
    caption: str  # its title on the summary page
    category: str  # its category in ``snakemake --report``
    rst: str  # its caption there: workflow/report/<rst>
    labels: dict[str, str] | None = None  # its labels there (to tell figures of one category apart)
    section: str = "more"  # where the summary page shows it: TRAINING_SECTION (right after the headline) or "more"

    @property
    def key(self) -> str:
        """The name of the file without ``.png``: the report rule's name for this output."""
        return Path(self.file).stem


#: the figures that answer "did training work?", shown right after the headline
TRAINING_SECTION = "training"

#: the figures, in the order they are drawn and shown on the summary page (a missing file is left off the page)
FIGURES = (
    Figure(
        "success_vs_step.png",
        "plot_success",
        "Success rate vs training step per horizon (95% Wilson bands)",
        "1. Success rate",
        "success_vs_step.rst",
        section=TRAINING_SECTION,
    ),
    Figure(
        "heatmap_last.png",
        "plot_heatmap_last",
        "Success per task and horizon at the last checkpoint",
        "2. Per task",
        "heatmap.rst",
        {"checkpoint": "last"},
    ),
    Figure(
        "heatmap_best.png",
        "plot_heatmap_best",
        "Success per task at the best checkpoint (chosen on even init states)",
        "2. Per task",
        "heatmap.rst",
        {"checkpoint": "best"},
    ),
    Figure(
        "training.png",
        "plot_training",
        "Training loss, learning rate and the sample error of the EMA model",
        "3. Training",
        "training.rst",
        section=TRAINING_SECTION,
    ),
    Figure(
        "rollouts.png",
        "plot_rollouts",
        "Frames of the rollouts below",
        "5. Rollouts",
        "rollouts.rst",
    ),
)


def video_prefix(run: str, step_dir: str, horizon_dir: str) -> str:
    """How the names in :data:`VIDEOS` of ``run``'s videos at one step and horizon (their folder names, step-<S> and
    h<H>) begin."""
    return f"{run}__{step_dir}__{horizon_dir}__"


def video_file(run: str, video: Path) -> str:
    """The name in :data:`VIDEOS` of the rollout video ``video`` (at eval/step-<S>/h<H>/videos/) of ``run``:
    ``<run>__step-<S>__h<H>__<task>__init<i>__<outcome>.mp4``."""
    h_dir = video.parent.parent
    return f"{video_prefix(run, h_dir.parent.name, h_dir.name)}{video.stem}.mp4"
