"""Reading the runs a report shows: each ``--results`` folder as a :class:`Run` of :class:`Result` s.

A run folder (or an evaluation-only checkpoint's) is laid out as the workflow writes it: ``settings.json`` (the
settings document of rdt.plan, read with ``rdt.plan.read_settings``), the training folder's ``metrics.csv`` and
``eval/step-<S>/h<H>/`` with the summary, ``episodes.jsonl`` and ``videos/``. A run with a settings document shows
exactly the evaluations it lists (:func:`listed_evaluations`). Nothing here draws or writes.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rdt import layout, plan
from rdt import report_stats as rs
from rdt.errors import UserError
from rdt.evaluation.ledger import EPISODES_FILE, VIDEO_DIR, read_episodes, select_records, success_counts
from rdt.training.run_folder import read_metrics
from rdt.utils.files import read_json

log = logging.getLogger("rdt.report")


@dataclass
class Result:
    """One evaluation (checkpoint step x execution horizon) of one run."""

    step: int
    horizon: int
    folder: Path
    summary: dict[str, Any]

    @property
    def overall(self) -> dict[str, Any]:
        """Counts over the records (episodes.jsonl), so every table of the page counts the same episodes; the
        summary's own counts when the folder has no records."""
        return self.counts()

    def counts(self, task: str | None = None) -> dict[str, Any] | None:
        if not (self.folder / EPISODES_FILE).is_file():
            return self.summary["overall"] if task is None else self.summary["tasks"].get(task)
        if task is not None and task not in self.summary["tasks"]:
            return None
        return success_counts([r for r in self.records if task is None or r["task"] == task])

    def rate(self, task: str | None = None) -> float | None:
        counts = self.counts(task)
        return None if counts is None else counts["success_rate"]

    @property
    def records(self) -> list[dict[str, Any]]:
        """The episode records of this evaluation (episodes.jsonl): those of the summary's outcome keys (the ledger
        also keeps records of other settings or checkpoints), limited to its tasks and episodes, one per (task,
        init state). A record cut by a kill is left out with a warning (rdt.evaluation.ledger.read_episodes), and
        when the records and summary.json disagree on the count the records are used and the difference is logged."""
        if "_records" not in self.__dict__:
            settings = self.summary.get("settings") or {}
            tasks = set(settings.get("tasks") or self.summary["tasks"])
            episodes = settings.get("episodes")
            raw = read_episodes(self.folder / EPISODES_FILE)
            if self.summary.get("keys"):
                raw = select_records(raw, self.summary["keys"])
            keep, seen = [], set()
            for r in raw:
                key = (r.get("task"), int(r.get("init_state", -1)))
                if key[0] in tasks and (episodes is None or key[1] < episodes) and key not in seen:
                    seen.add(key)
                    keep.append(r)
            told = self.summary["overall"]["episodes"]
            if raw and len(keep) != told:
                log.warning(
                    "%s: episodes.jsonl holds %d episode(s) of this evaluation, summary.json counts %d; the report "
                    "uses the records",
                    self.folder,
                    len(keep),
                    told,
                )
            self.__dict__["_records"] = sorted(keep, key=lambda r: (natural_key(r["task"]), int(r["init_state"])))
        return self.__dict__["_records"]

    @property
    def outcomes(self) -> dict[tuple[str, int], bool]:
        """(task, init state) -> success, simulator errors left out."""
        return rs.outcomes_from_records(self.records)


@dataclass
class Run:
    name: str
    folder: Path
    settings: dict[str, Any] | None
    metrics: list[dict[str, float]]  # rows of metrics.csv (rdt.training.run_folder.read_metrics)
    results: list[Result] = field(default_factory=list)

    @property
    def steps(self) -> list[int]:
        return sorted({r.step for r in self.results})

    @property
    def horizons(self) -> list[int]:
        return sorted({r.horizon for r in self.results})

    @property
    def tasks(self) -> list[str]:
        return sorted({t for r in self.results for t in r.summary["tasks"]}, key=natural_key)

    def result(self, step: int, horizon: int) -> Result | None:
        return next((r for r in self.results if r.step == step and r.horizon == horizon), None)

    @property
    def last_step(self) -> int:
        return self.steps[-1]

    def selection(self, horizon: int | None = None) -> rs.Selection:
        """The honest "best" checkpoint (rdt/report_stats.py): chosen on the even init states, reported on the odd
        ones; over all horizons (their pairs pooled) or at one ``horizon``."""
        by_step: dict[int, dict] = {}
        for r in self.results:
            if horizon is not None and r.horizon != horizon:
                continue
            o = by_step.setdefault(r.step, {})
            for (task, init), ok in r.outcomes.items():
                o[(f"{task}@H{r.horizon}", init)] = ok
        return rs.select_best(by_step)

    def best_step(self) -> int | None:
        """The honest best checkpoint over all horizons; None when there is none (ties, too few init states)."""
        return self.selection().best


def is_replay(run: Run) -> bool:
    """A replay run (rdt.replay): open-loop replay of demos, the floor the trained runs are compared with."""
    return (run.settings or {}).get("kind") == plan.REPLAY


def replay_baselines(run: Run, runs: list[Run]) -> list[Run]:
    """The replay runs ``run`` is compared with: the replay of its own demos (the same demo settings but for the
    noise injected while recording them, whose replay is the clean demos' from the same init states, and the code
    of the generation each keeps using (rdt/plan/demos.py), and the same demos per task, in the settings documents),
    else every replay run."""

    def demos(settings: dict | None) -> dict | None:
        d = (settings or {}).get("demos")
        return None if d is None else {k: v for k, v in d.items() if k not in ("action_noise", "code")}

    replays = [r for r in runs if is_replay(r) and r.results]
    s = run.settings or {}
    own = [
        r
        for r in replays
        if demos(s) is not None
        and demos(r.settings) == demos(s)
        and (r.settings or {}).get("demos_per_task") == s.get("demos_per_task")
    ]
    return own or replays


def horizon_label(horizon: int) -> str:
    return "open loop (replay)" if horizon == plan.REPLAY_HORIZON else f"H={horizon}"


def natural_key(text: str) -> list:
    """Sort key with numbers compared as numbers (SCENE2 before SCENE10)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", str(text))]


# ---------------------------------------------------------------------------------------------------- reading
def read_run(folder: Path) -> Run:
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"--results {folder}: not a folder (expected a run folder with eval/step-<S>/h<H>/)")
    settings = plan.read_settings(folder)  # the settings document of rdt.plan (None when absent)
    run = Run(folder.name, folder, settings, read_metrics(plan.train_folder(folder, settings)))
    for step, horizon, summary_path in listed_evaluations(folder, settings):
        h_dir = summary_path.parent
        summary = read_json(summary_path)
        for key in ("overall", "tasks"):
            if key not in summary:
                raise UserError(f"{summary_path}: missing key {key!r} (expected rdt evaluate's summary.json)")
        run.results.append(Result(step, horizon, h_dir, summary))
    run.results.sort(key=lambda r: (r.step, r.horizon))
    return run


def listed_evaluations(folder: Path, settings: dict | None) -> list[tuple[int, int, Path]]:
    """(step, horizon, summary file) of a run folder: exactly those its settings document lists (the plan's current
    evaluations, each by its identity-named summary), with one line naming how many other summaries found there
    are ignored (an earlier training's, other settings'); without a document, what the folder holds."""
    found = layout.evaluations(folder)
    if not settings or "evaluations" not in settings:
        return found
    listed = [(int(e["step"]), int(e["horizon"]), folder / e["summary"]) for e in settings["evaluations"]]
    missing = [str(p) for _, _, p in listed if not p.is_file()]
    if missing:
        raise UserError(f"{folder}: the evaluation(s) {missing[:3]} of its settings.json are missing; run the workflow")
    present = {p.resolve() for _, _, p in listed}
    others = [
        f for f in Path(folder, layout.EVAL).glob(f"step-*/h*/{layout.SUMMARY_GLOB}") if f.resolve() not in present
    ]
    if others:
        log.warning(
            "%s: %d summary file(s) not in the current plan (another training, settings or code) are ignored, e.g. %s",
            folder,
            len(others),
            others[0].relative_to(folder),
        )
    return sorted(listed)


def pick_videos(runs: list[Run], per_run: int) -> list[tuple[str, Path]]:
    """Up to ``per_run`` rollout videos per run from its last checkpoint, alternating successes and failures."""
    chosen = []
    for run in runs:
        if not run.steps:
            continue
        last = [r for r in run.results if r.step == run.steps[-1]]
        videos = sorted(
            (v for r in last for v in (r.folder / VIDEO_DIR).glob("*.mp4")),
            key=lambda v: (v.name, natural_key(v.parent.parent.name)),  # a task's videos in horizon order
        )
        good = [v for v in videos if v.stem.endswith("__success")]
        bad = [v for v in videos if v.stem.endswith("__failure")]
        mixed = [v for pair in zip(good, bad) for v in pair] + good[len(bad) :] + bad[len(good) :]
        chosen += [(run.name, v) for v in mixed[:per_run]]
    return chosen
