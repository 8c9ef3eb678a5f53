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
import csv
import io
import json
import logging
import math
import platform
import re
import shutil
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rdt import fingerprint, layout, plan
from rdt import report_stats as rs
from rdt.audit import COLUMNS as AUDIT_COLUMNS
from rdt.audit import audit, checkpoint_audit
from rdt.errors import UserError
from rdt.training.run_folder import read_metrics
from rdt.utils.atomic import atomic_dir
from rdt.utils.files import read_json
from rdt.utils.progress import track
from rdt.utils.versions import package_versions

log = logging.getLogger("rdt.report")

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
        from rdt.evaluate import success_counts

        if not (self.folder / "episodes.jsonl").is_file():
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
        init state). A record cut by a kill is left out with a warning (rdt.evaluate.read_episodes), and when the
        records and summary.json disagree on the count the records are used and the difference is logged."""
        if "_records" not in self.__dict__:
            from rdt.evaluate import EPISODES_FILE, read_episodes, select_records

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
    """The replay runs ``run`` is compared with: the replay of its own demos (same demo settings and demos per
    task in the settings documents), else every replay run."""
    replays = [r for r in runs if is_replay(r) and r.results]
    s = run.settings or {}
    own = [
        r
        for r in replays
        if s.get("demos") is not None
        and (r.settings or {}).get("demos") == s.get("demos")
        and (r.settings or {}).get("demos_per_task") == s.get("demos_per_task")
    ]
    return own or replays


def horizon_label(horizon: int) -> str:
    return "open loop (replay)" if horizon == plan.REPLAY_HORIZON else f"H={horizon}"


# ---------------------------------------------------------------------------------------------------- reading
def read_run(folder: Path) -> Run:
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"--results {folder}: not a folder (expected a run folder with eval/step-<S>/h<H>/)")
    settings = plan.read_settings(folder)  # the settings document of rdt.plan (None when absent)
    run = Run(folder.name, folder, settings, read_metrics(plan.train_folder(folder, settings)))
    for step, horizon, summary_path in _listed_evaluations(folder, settings):
        h_dir = summary_path.parent
        summary = read_json(summary_path)
        for key in ("overall", "tasks"):
            if key not in summary:
                raise UserError(f"{summary_path}: missing key {key!r} (expected rdt evaluate's summary.json)")
        run.results.append(Result(step, horizon, h_dir, summary))
    run.results.sort(key=lambda r: (r.step, r.horizon))
    return run


def _listed_evaluations(folder: Path, settings: dict | None) -> list[tuple[int, int, Path]]:
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


# ---------------------------------------------------------------------------------------------------- tables
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


def _csv_text(rows: list[dict[str, Any]], columns: tuple[str, ...] | list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: ("" if row.get(k) is None else row[k]) for k in columns})
    return buf.getvalue()


def provenance(runs: list[Run]) -> dict[str, Any]:
    versions = package_versions()
    code = {m: fingerprint.fingerprint(m) for m in STAGE_MODULES if fingerprint.closure(m)}
    return {
        "report": {"versions": versions, "code_fingerprints": code, "machine": platform.platform()},
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


# ---------------------------------------------------------------------------------------------------- figures
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    fig.savefig(path, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)


def _step_axis(ax) -> None:
    """Readable step ticks up to 100k and beyond: at most 6 ticks, 20k instead of 20000."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1000:g}k" if abs(v) >= 10000 else f"{v:g}"))


def plot_success(runs: list[Run], path: Path) -> None:
    """Success rate vs step, one line per execution horizon with its 95% Wilson band, one panel per run. Equal
    lines stay visible: each horizon is drawn with its own marker, line style and a small vertical offset."""
    plt = _plt()
    everything = runs
    runs = [r for r in runs if not is_replay(r)] or runs
    fig, axes = plt.subplots(1, len(runs), figsize=(5.2 * len(runs), 3.8), squeeze=False, sharey=True)
    markers, styles = "osD^v<>p", ["-", "--", ":", "-."]
    for ax, run in zip(axes[0], runs):
        for rp in [] if is_replay(run) else replay_baselines(run, everything):
            rate = rp.results[-1].rate()
            if rate is not None:
                ax.axhline(
                    rate, color="0.4", linestyle=(0, (1, 2)), linewidth=1.5, label=f"{rp.name} (open-loop replay)"
                )
        n_h = len(run.horizons)
        for k, h in enumerate(run.horizons):
            res = [r for r in run.results if r.horizon == h and r.rate() is not None]
            steps = [r.step for r in res]
            offset = 0.012 * (k - (n_h - 1) / 2)
            (line,) = ax.plot(
                steps,
                [r.rate() + offset for r in res],
                marker=markers[k % len(markers)],
                linestyle=styles[k % len(styles)],
                markersize=5,
                label=f"H={h}",
            )
            lo = [r.overall["ci95"][0] for r in res]
            hi = [r.overall["ci95"][1] for r in res]
            ax.fill_between(steps, lo, hi, alpha=0.12, color=line.get_color())
        counts = sorted({r.overall["episodes"] for r in run.results})
        n = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
        ax.set(title=f"{run.name} ({n} episodes per point)", xlabel="training step", ylim=(-0.05, 1.05))
        _step_axis(ax)
        ax.grid(alpha=0.3)
        ax.legend(title="execution horizon", fontsize=8)
    axes[0][0].set_ylabel("success rate (95% Wilson band)\nlines offset by ~1 point to stay visible")
    _save(fig, path)


def plot_heatmaps(runs: list[Run], path: Path, which: str) -> None:
    """Success per task x horizon at the last (``which="last"``) or the honest best checkpoint of each run (chosen
    on even init states; a run without a best shows why). Rows: the union of tasks in natural order with their
    full names, once, on the left; one panel per run, sharing the rows."""
    plt = _plt()
    tasks = sorted({t for r in runs for t in r.tasks}, key=natural_key)
    width_names = 0.055 * max(len(t) for t in tasks)
    cols = sum(max(len(r.horizons), 1) for r in runs)
    fig, axes = plt.subplots(
        1,
        len(runs),
        figsize=(width_names + 1.5 + 0.8 * cols, 1.6 + 0.24 * len(tasks)),
        squeeze=False,
        sharey=True,
        gridspec_kw={"width_ratios": [max(len(r.horizons), 1) for r in runs]},
    )
    im = None
    small = len(tasks) <= 30
    for k, (ax, run) in enumerate(zip(axes[0], runs)):
        step = run.last_step if which == "last" else run.best_step()
        if step is None:
            grid = [[float("nan")] * len(run.horizons) for _ in tasks]
            title = f"{run.name}: no best checkpoint\n({run.selection().reason})"
        else:
            grid = [
                [_nan(run.result(step, h).rate(t) if run.result(step, h) else None) for h in run.horizons]
                for t in tasks
            ]
            title = f"{run.name}: {which} checkpoint (step {step})"
        im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto", interpolation="nearest")
        ax.set_xticks(range(len(run.horizons)), [f"H={h}" for h in run.horizons])
        if k == 0:  # shared rows: the names once, on the left (setting them per panel would clear them)
            ax.set_yticks(range(len(tasks)), tasks, fontsize=7 if small else 6)
        ax.tick_params(axis="y", length=0, labelleft=k == 0)
        if small:
            for i, row in enumerate(grid):
                for j, v in enumerate(row):
                    ax.text(
                        j,
                        i,
                        "-" if math.isnan(v) else f"{v:.2f}",
                        ha="center",
                        va="center",
                        color="white" if not math.isnan(v) and v < 0.5 else "black",
                        fontsize=8,
                    )
        ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=list(axes[0]), label="success rate", fraction=0.04)
    _save(fig, path)


def smooth(values: list[float], window: int) -> list[float]:
    """Trailing moving average over ``window`` points (the first points average the points so far)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_training(runs: list[Run], path: Path) -> None:
    """Training loss, learning rate and held-out sample MSE vs step, one line per run."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.6))
    for run in runs:
        if not run.metrics:
            continue
        for ax, col in zip(axes, ("loss", "lr", "sample_mse")):
            pts = [(m["step"], m[col]) for m in run.metrics if col in m]
            if not pts:
                continue
            steps, values = zip(*pts)
            if col in ("loss", "sample_mse") and len(pts) > 20:
                (raw,) = ax.plot(steps, values, alpha=0.2, linewidth=0.6)
                window = max(5, len(pts) // 50)
                ax.plot(
                    steps,
                    smooth(list(values), window),
                    color=raw.get_color(),
                    label=f"{run.name} (mean of {window} logged values)",
                )
            else:
                ax.plot(steps, values, marker="." if col == "sample_mse" else None, label=run.name)
    for ax, title in zip(axes, ("training loss (raw faint, smoothed solid)", "learning rate", sample_mse_title(runs))):
        ax.set(title=title, xlabel="step")
        _step_axis(ax)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    axes[1].ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    losses = [m["loss"] for r in runs for m in r.metrics if "loss" in m]
    if losses and min(losses) > 0:
        axes[0].set_yscale("log")
    _save(fig, path)


def sample_mse_title(runs: list[Run]) -> str:
    """The sample-error panel's title names the episodes it is measured on: the trainer samples the held-out
    episodes when ``train.heldout_episodes`` > 0, else the training episodes themselves."""
    held = {_samples_heldout(r.settings or {}) for r in runs if r.metrics}
    where = {frozenset({True}): "held-out episodes", frozenset({False}): "training episodes"}.get(
        frozenset(held), "held-out episodes where heldout_episodes > 0, else training episodes"
    )
    return f"sample MSE, action slots ({where})"


def _samples_heldout(settings: dict[str, Any]) -> bool:
    """Whether a training's sample error is measured on held-out episodes (rdt.data.dataset.split_episodes keeps
    at least one episode of a task for training, so one demo per task holds none out)."""
    heldout = (settings.get("train") or {}).get("heldout_episodes", 0)
    per_task = settings.get("demos_per_task")
    return heldout > 0 and (per_task is None or per_task > 1)


def pick_videos(runs: list[Run], per_run: int) -> list[tuple[str, Path]]:
    """Up to ``per_run`` rollout videos per run from its last checkpoint, alternating successes and failures."""
    chosen = []
    for run in runs:
        if not run.steps:
            continue
        last = [r for r in run.results if r.step == run.steps[-1]]
        videos = sorted(
            (v for r in last for v in (r.folder / "videos").glob("*.mp4")),
            key=lambda v: (v.name, natural_key(v.parent.parent.name)),  # a task's videos in horizon order
        )
        good = [v for v in videos if v.stem.endswith("__success")]
        bad = [v for v in videos if v.stem.endswith("__failure")]
        mixed = [v for pair in zip(good, bad) for v in pair] + good[len(bad) :] + bad[len(good) :]
        chosen += [(run.name, v) for v in mixed[:per_run]]
    return chosen


def plot_rollouts(videos: list[tuple[str, Path]], path: Path) -> None:
    """First, middle and last frame of each chosen rollout video (rows), titled with run, horizon and outcome."""
    from rdt.video import read_video

    plt = _plt()
    rows = max(len(videos), 1)
    fig, axes = plt.subplots(rows, 3, figsize=(10, 2.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (run, video) in enumerate(videos):
        frames = read_video(video)
        for j, k in enumerate((0, len(frames) // 2, len(frames) - 1)):
            axes[i][j].imshow(frames[k])
            h_dir = video.parent.parent
            task, _, outcome = video.stem.rsplit("__", 2)
            name = "\n".join(textwrap.wrap(task, 44))
            head = f"{run} {h_dir.parent.name} H={h_dir.name[1:]} {outcome}\n{name}\n" if j == 0 else ""
            axes[i][j].set_title(f"{head}t={k}", fontsize=7, loc="left" if j == 0 else "center")
    if not videos:
        axes[0][1].text(0.5, 0.5, "no rollout videos", ha="center", va="center")
    _save(fig, path)


def video_label(run: str, video: Path) -> str:
    """``<run>__step-<S>__h<H>__<task>__init<i>__<outcome>`` of a video at eval/step-<S>/h<H>/videos/."""
    h_dir = video.parent.parent
    return f"{run}__{h_dir.parent.name}__{h_dir.name}__{video.stem}"


def natural_key(text: str) -> list:
    """Sort key with numbers compared as numbers (SCENE2 before SCENE10)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", str(text))]


def _nan(v: float | None) -> float:
    return float("nan") if v is None else v


# ---------------------------------------------------------------------------------------------------- summary page
def headline_rows(runs: list[Run]) -> list[dict[str, Any]]:
    """Per run and horizon at the last checkpoint: counts, rate, 95% interval, and the honest best checkpoint."""
    rows = []
    for run in runs:
        for h in run.horizons:
            r = run.result(run.last_step, h)
            if r is None:
                continue
            o = r.overall
            sel = run.selection(h) if len(run.steps) > 1 else None
            rows.append(
                {
                    "run": run.name,
                    "horizon": h,
                    "step": run.last_step,
                    "successes": o["successes"],
                    "valid": o["episodes"] - o["errors"],
                    "errors": o["errors"],
                    "rate": o["success_rate"],
                    "ci95": o.get("ci95"),
                    "selection": sel,
                }
            )
    return rows


def comparisons(runs: list[Run]) -> dict[str, list[rs.Comparison]]:
    """The paired comparisons the page shows, Holm-adjusted together: each pair of horizons of a run at its last
    checkpoint; each pair of runs at every horizon both evaluated (last checkpoints); each pair of runs at their
    best horizons (chosen on even init states, compared on odd init states)."""
    out: dict[str, list[rs.Comparison]] = {"replay": [], "horizons": [], "runs": [], "best": []}
    everything, runs = runs, [r for r in runs if not is_replay(r)]
    for run in runs:
        for rp in replay_baselines(run, everything):
            floor = rp.results[-1]
            for h in run.horizons:
                r = run.result(run.last_step, h)
                if r is not None:
                    out["replay"].append(
                        rs.Comparison(
                            f"step {run.last_step}, same init states",
                            f"{run.name} H={h}",
                            f"{rp.name} (open-loop replay)",
                            rs.paired(r.outcomes, floor.outcomes),
                        )
                    )
    last = {
        run.name: {h: run.result(run.last_step, h) for h in run.horizons if run.result(run.last_step, h)}
        for run in runs
    }
    for run in runs:
        hs = sorted(last[run.name])
        for i, a in enumerate(hs):
            for b in hs[i + 1 :]:
                out["horizons"].append(
                    rs.Comparison(
                        f"{run.name}, step {run.last_step}",
                        f"H={a}",
                        f"H={b}",
                        rs.paired(last[run.name][a].outcomes, last[run.name][b].outcomes),
                    )
                )
    for i, ra in enumerate(runs):
        for rb in runs[i + 1 :]:
            for h in sorted(set(last[ra.name]) & set(last[rb.name])):
                out["runs"].append(
                    rs.Comparison(
                        f"H={h}, last checkpoints",
                        ra.name,
                        rb.name,
                        rs.paired(last[ra.name][h].outcomes, last[rb.name][h].outcomes),
                    )
                )
            ha = rs.best_horizon({h: r.outcomes for h, r in last[ra.name].items()})
            hb = rs.best_horizon({h: r.outcomes for h, r in last[rb.name].items()})
            if ha is None or hb is None:
                continue
            a = rs.half(last[ra.name][ha].outcomes, False)
            b = rs.half(last[rb.name][hb].outcomes, False)
            out["best"].append(
                rs.Comparison(
                    "best horizon of each (chosen on even init states), compared on odd init states",
                    f"{ra.name} H={ha}",
                    f"{rb.name} H={hb}",
                    rs.paired(a, b),
                )
            )
    rs.adjust([c for group in out.values() for c in group])
    return out


def beats(c: rs.Comparison, alpha: float = rs.ALPHA) -> bool:
    """Whether ``c.a`` is significantly better than ``c.b`` (Holm-adjusted p when set)."""
    p = c.p_adjusted if c.p_adjusted is not None else c.stats.p_value
    return c.stats.n > 0 and c.stats.diff > 0 and p < alpha


def _esc(x: Any) -> str:
    import html

    return html.escape("" if x is None else str(x))


def _pct(rate: float | None) -> str:
    return "n/a" if rate is None else f"{100 * rate:.1f}%"


def _ci(ci: list | tuple | None) -> str:
    return "" if not ci else f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _table(head: list[str], rows: list[list[str]], cls: str = "", raw: bool = False) -> str:
    """An HTML table; cells are escaped unless ``raw`` (then the caller escaped them). Click a header to sort."""
    cell = (lambda c: c) if raw else _esc
    th = "".join(f"<th>{_esc(h)}</th>" for h in head)
    body = "\n".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="sortable {cls}"><thead><tr>{th}</tr></thead><tbody>\n{body}\n</tbody></table>'


def _img(path: Path, alt: str) -> str:
    import base64

    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}">'


def _video(path: Path, name: str, budget: list[int]) -> str:
    """A <video> that plays in the page: embedded (base64) while ``budget[0]`` bytes remain, else a relative link
    to videos/NAME (next to summary.html)."""
    import base64

    size = path.stat().st_size
    if size <= budget[0]:
        budget[0] -= size
        src = f"data:video/mp4;base64,{base64.b64encode(path.read_bytes()).decode()}"
    else:
        src = f"videos/{name}"
    return f'<video controls loop muted playsinline preload="metadata" width="320" src="{src}"></video>'


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5em auto;max-width:1200px;
     padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.88em}th,td{border:1px solid #ddd;padding:.25em .5em;
     text-align:left;vertical-align:top}th{background:#f3f3f3;cursor:pointer}
tr.dev td,td.dev{background:#fde2e1}tr.cmp td,td.cmp{background:#fff4d6}td.ok{background:#e6f4ea}
.verdict{margin:.25em 0;font-family:ui-monospace,monospace;font-size:.85em}.better{color:#0a6b2d;font-weight:600}
.note{color:#555;font-size:.9em}.warn{color:#a11}.fig img{max-width:100%;border:1px solid #eee;margin:.4em 0}
.videos{display:flex;flex-wrap:wrap;gap:1em}.videos figure{margin:0}.videos figcaption{font-size:.8em;max-width:320px}
details{margin:.5em 0}summary{cursor:pointer;font-weight:600}
"""

SORT_JS = """
document.querySelectorAll('table.sortable th').forEach(function(th){th.addEventListener('click',function(){
 var t=th.closest('table'),b=t.tBodies[0],i=Array.prototype.indexOf.call(th.parentNode.children,th);
 var asc=th.dataset.asc!=='1';th.dataset.asc=asc?'1':'0';
 var rows=Array.prototype.slice.call(b.rows);
 rows.sort(function(x,y){var a=x.cells[i].textContent,c=y.cells[i].textContent,
  na=parseFloat(a),nc=parseFloat(c);var r=(!isNaN(na)&&!isNaN(nc))?na-nc:a.localeCompare(c,undefined,{numeric:true});
  return asc?r:-r;});rows.forEach(function(r){b.appendChild(r);});});});
"""


def _plan_html(run: Run) -> str:
    c = (run.settings or {}).get("eval_plan")
    if not c:
        return ""
    rows = []
    for h, r in sorted(c["per_horizon"].items(), key=lambda kv: int(kv[0])):
        rows.append(
            [
                f"H={h}",
                f"{r['jobs']:,}",
                f"{r['episodes']:,}",
                f"{r['sim_steps_max']:,}",
                f"{r['policy_calls_max']:,}",
                f"{r['hours_max']:,}",
            ]
        )
    t = c["total"]
    rows.append(
        [
            "all",
            f"{t['jobs']:,}",
            f"{t['episodes']:,}",
            f"{t['sim_steps_max']:,}",
            f"{t['policy_calls_max']:,}",
            f"{t['hours_max']:,}",
        ]
    )
    eps = {int(k): v for k, v in c["episodes_per_task"].items()}
    text = (
        f"<p><b>{_esc(run.name)}</b>: {len(c['steps'])} checkpoint(s) evaluated (steps "
        f"{_esc(', '.join(map(str, c['steps'])))}), {c['tasks']} task(s), episodes per task "
        f"{_esc(', '.join(f'{v} at {s}' for s, v in sorted(eps.items())))}; at most {c['max_steps']} policy steps "
        "per episode."
    )
    tr = c.get("train")
    if tr:
        text += (
            f" Training: {tr['samples']:,} samples; evaluation model work at most "
            f"{100 * tr['model_work_ratio_max']:.1f}% of training's."
        )
    rates = c.get("rates") or {}
    text += (
        f' <span class="note">Hours from rates: simulator {rates.get("sim_step_s", "unknown")} s/step + '
        f"{rates.get('episode_overhead_s', 0)} s/episode, policy {rates.get('policy_call_s') or 'unknown'} "
        f"s/call ({_esc(rates.get('source'))}).</span></p>"
    )
    return text + _table(
        ["horizon", "jobs", "episodes", "simulator steps (max)", "policy calls (max)", "hours (max)"], rows
    )


def _state_range_rows(runs: list[Run]) -> list[tuple[bool, list[str]]]:
    rows = []
    for run in runs:
        for r in run.results:
            sr = r.summary.get("state_range")
            if not sr:
                continue
            checked, far = sr.get("states_checked", 0), sr.get("states_far_outside", 0)
            slots = sorted((sr.get("far_per_slot") or {}).items(), key=lambda kv: -kv[1])
            frac = far / checked if checked else 0.0
            rows.append(
                (
                    frac > 0.1,
                    [
                        run.name,
                        str(r.step),
                        f"H={r.horizon}",
                        f"{far} of {checked}",
                        f"{100 * frac:.0f}%",
                        ", ".join(f"{k} ({v})" for k, v in slots[:4]),
                    ],
                )
            )
    return rows


def _page_head(runs: list[Run]) -> list[str]:
    """The page's head, title and the note on which runs and checkpoints it shows."""
    return [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>RDT LIBERO report: "
        f"{_esc(', '.join(r.name for r in runs))}</title><style>{CSS}</style></head><body>",
        "<h1>RDT fine-tuning on LIBERO: summary</h1>",
        '<p class="note">Runs: '
        + ", ".join(f"<b>{_esc(r.name)}</b> (last checkpoint: step {r.last_step})" for r in runs)
        + ". Every number below is from the <b>last "
        "checkpoint</b> unless it says otherwise. Horizons and runs are evaluated on the same (task, init "
        "state) pairs, so they are compared paired.</p>",
        *_all_zero_note(runs),
    ]


def _all_zero_note(runs: list[Run]) -> list[str]:
    """One line at the top when no episode of any evaluated model succeeded: nothing below can rank settings."""
    results = [r for run in runs if not is_replay(run) for r in run.results]
    if not results or any(r.overall["successes"] for r in results):
        return []
    episodes = sum(r.overall["episodes"] for r in results)
    return [
        f'<p class="warn"><b>No episode succeeded</b> in any evaluation ({len(results)} evaluations, {episodes} '
        "episodes): every rate is 0, so no horizon, checkpoint or run is better than another here. Check the "
        "training curves and the audit below before reading any comparison.</p>"
    ]


def _best_cell(h: dict[str, Any]) -> str:
    """The "best checkpoint" cell of one headline row: chosen on even init states, reported on odd."""
    sel = h["selection"]
    if sel is None:
        return "one checkpoint"
    if sel.best is None:
        return f"no best: {sel.reason}"
    rep_s, rep_n = sel.report
    last = sel.last_report
    if sel.best == h["step"]:
        return f"the last (step {sel.best}): {rep_s}/{rep_n} = {_pct(sel.report_rate)} on odd init states"
    return f"step {sel.best}: {rep_s}/{rep_n} = {_pct(sel.report_rate)} on odd init states" + (
        f" (last checkpoint on the same odd init states: {last[0]}/{last[1]})" if last else ""
    )


def _headline_section(runs: list[Run]) -> list[str]:
    """1. success per run and execution horizon at the last checkpoint, with the best checkpoint."""
    rows = [
        [
            h["run"],
            horizon_label(h["horizon"]),
            f"{_pct(h['rate'])}",
            _ci(h["ci95"]),
            f"{h['successes']}/{h['valid']}" + (f" ({h['errors']} errors)" if h["errors"] else ""),
            _best_cell(h),
        ]
        for h in headline_rows(runs)
    ]
    return [
        "<h2>Success per run and execution horizon (last checkpoint)</h2>",
        _table(
            [
                "run",
                "horizon",
                "success",
                "95% CI (Wilson)",
                "successes / episodes",
                "best checkpoint (chosen on even init states, reported on odd)",
            ],
            rows,
        ),
        '<p class="note">"Best" is selected on the even init states and its success is reported on the '
        "odd init states, so the number shown was not used to pick it; when all checkpoints tie there is "
        "no best.</p>",
    ]


def _comparisons_section(runs: list[Run]) -> list[str]:
    """2. the paired comparisons of horizons and runs, one verdict line each."""
    comp = comparisons(runs)
    parts = ["<h2>Paired comparisons</h2>"]
    labels = {
        "replay": "Each run against open-loop replay of its demos (the floor an imitation policy has to beat)",
        "horizons": "Execution horizons within each run (last checkpoint)",
        "runs": "Runs at equal horizons (last checkpoints)",
        "best": "Runs at their best horizons",
    }
    total = sum(len(v) for v in comp.values())
    below = [c for c in comp["replay"] if not beats(c)]
    if below:
        parts.append(
            '<p class="warn"><b>Not better than replaying the demos open-loop:</b> '
            + "; ".join(
                _esc(f"{c.a} ({_pct(c.stats.rate_a)} vs {_pct(c.stats.rate_b)} on {c.stats.n} pairs)") for c in below
            )
            + ". A policy that does not beat a tape recorder of its own demos on the same init states has not shown "
            "that it imitates from what it sees.</p>"
        )
    empty = 0
    for key, group in comp.items():
        if key != "replay":  # both sides without a success say nothing; one line counts them instead
            empty += sum(1 for c in group if c.stats.n and not (c.stats.both or c.stats.only_a or c.stats.only_b))
            group = [c for c in group if not c.stats.n or c.stats.both or c.stats.only_a or c.stats.only_b]
        if not group:
            continue
        parts.append(f"<h3>{labels[key]}</h3>")
        for c in group:
            v = c.verdict()
            cls = "better" if " is better than " in v.split(":")[0] else ""
            parts.append(f'<p class="verdict"><span class="{cls}">{_esc(c.scope)}: {_esc(v)}</span></p>')
    if empty:
        parts.append(f'<p class="note">{empty} comparison(s) where neither side solved an episode are left out.</p>')
    if total:
        parts.append(
            f'<p class="note">Difference in success rate with a 95% Newcombe interval for paired data and '
            f"the exact McNemar test on the discordant pairs; a verdict needs Holm-adjusted p &lt; 0.05 over "
            f"the {total} comparisons on this page.</p>"
        )
    else:
        parts.append('<p class="note">Nothing to compare: one run with one horizon.</p>')
    return parts


def _audit_section(runs: list[Run], audits: list[dict[str, Any]]) -> list[str]:
    """3. the configuration audit, one column per run, cells coloured by flag (none without audit rows)."""
    if not audits:
        return []
    names = [r.name for r in runs if any(a["run"] == r.name for a in audits)]
    settings = list(dict.fromkeys(a["setting"] for a in audits))
    by = {(a["run"], a["setting"]): a for a in audits}
    rows = []
    for st in settings:
        first = next(by[(n, st)] for n in names if (n, st) in by)
        cells = [_esc(st), _esc(first["recipe"]), _esc(first["source"]), _esc(first["original"])]
        for n in names:
            a = by.get((n, st))
            if a is None:
                cells.append("")
                continue
            cls = {"DEVIATES": "dev", "comparison": "cmp"}.get(a["flag"], "ok")
            formula = f'<br><span class="note">{_esc(a["formula"])}</span>' if a["formula"] else ""
            cells.append(f'<span class="{cls}">{_esc(a["value"])} ({_esc(a["flag"])})</span>{formula}')
        rows.append(cells)
    table = _table(["setting", "recipe", "source", "original finetune.sh"] + names, rows, raw=True)
    # colour the cells by flag
    for cls in ("dev", "cmp", "ok"):
        table = table.replace(f'<td><span class="{cls}">', f'<td class="{cls}"><span class="{cls}">')
    return [
        "<h2>Configuration audit against the RDT-1B recipe</h2>",
        table,
        '<p class="note">Red: deviates from the recipe; amber: a horizon outside 8-16 evaluated as a '
        "comparison next to a recipe horizon; sources (docs/recipe.md in the repository): the seed analysis "
        "(the first user's comparison of the paper's recipe with their failing run), the official finetune.sh "
        "and the RDT code.</p>",
    ]


def _state_range_section(runs: list[Run]) -> list[str]:
    """4. evaluations whose observed states lay far outside the training range (none when all were inside)."""
    sr = _state_range_rows(runs)
    if not sr:
        return []
    body = "\n".join(
        ("<tr class='dev'>" if bad else "<tr>") + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>"
        for bad, row in sr
    )
    return [
        "<h2>Observed states outside the training range</h2>",
        '<table class="sortable"><thead><tr><th>run</th><th>step</th><th>horizon</th><th>policy calls '
        "with a state far outside</th><th>share</th><th>slots (calls)</th></tr></thead><tbody>"
        f"{body}</tbody></table>",
        '<p class="note">A state is far outside when it lies beyond the training min/max by more than '
        "half the range (a distribution shift between the training data and the simulator); rows over "
        "10% are red.</p>",
    ]


def _plan_section(runs: list[Run]) -> list[str]:
    """5. each run's evaluation plan and its cost (none when no run recorded one)."""
    plans = [_plan_html(r) for r in runs]
    return ["<h2>Evaluation plan and its cost</h2>" + "".join(plans)] if any(plans) else []


#: the figures of the summary page, in page order: file in ``out`` -> caption (a missing file is left out)
FIGURES = (
    ("success_vs_step.png", "Success rate vs training step per horizon (95% Wilson bands)"),
    ("heatmap_last.png", "Success per task and horizon at the last checkpoint"),
    ("heatmap_best.png", "Success per task at the best checkpoint (chosen on even init states)"),
    ("training.png", "Training loss, learning rate and held-out sample MSE"),
    ("rollouts.png", "Frames of the rollouts below"),
)


def _figures_section(out: Path) -> list[str]:
    """6. the figures written into ``out``, embedded."""
    return ["<h2>Figures</h2>"] + [
        f'<div class="fig"><p><b>{_esc(caption)}</b></p>{_img(out / name, caption)}</div>'
        for name, caption in FIGURES
        if (out / name).is_file()
    ]


def _videos_section(videos: list[tuple[str, Path]], out: Path, video_bytes: int) -> list[str]:
    """7. the rollout videos, embedded while ``video_bytes`` last, then linked (none without videos)."""
    if not videos:
        return []
    parts = ["<h2>Rollouts (last checkpoint)</h2><div class='videos'>"]
    budget = [video_bytes]
    for run, video in videos:
        name = f"{video_label(run, video)}.mp4"
        path = out / "videos" / name
        h_dir = video.parent.parent
        task, init, outcome = video.stem.rsplit("__", 2)
        parts.append(
            f"<figure>{_video(path if path.is_file() else video, name, budget)}<figcaption>"
            f"{_esc(run)} {_esc(h_dir.parent.name)} H={_esc(h_dir.name[1:])} {_esc(init)} "
            f"<b>{_esc(outcome)}</b><br>{_esc(task)}</figcaption></figure>"
        )
    parts.append("</div>")
    return parts


def _per_task_section(runs: list[Run]) -> list[str]:
    """8. success per task, one column per run and horizon, at the last checkpoint."""
    tasks = sorted({t for r in runs for t in r.tasks}, key=natural_key)
    cols = [(run, h) for run in runs for h in run.horizons if run.result(run.last_step, h)]
    rows = []
    for t in tasks:
        row = [t]
        for run, h in cols:
            c = run.result(run.last_step, h).counts(t)
            row.append(
                "" if c is None else f"{_pct(c['success_rate'])} ({c['successes']}/{c['episodes'] - c['errors']})"
            )
        rows.append(row)
    return [
        "<h2>Per task (last checkpoint)</h2>",
        _table(["task"] + [f"{run.name} H={h}" for run, h in cols], rows),
    ]


def _per_episode_section(runs: list[Run]) -> list[str]:
    """9. every episode of the last checkpoints, folded, sortable."""
    rows = []
    for run in runs:
        for r in run.results:
            if r.step != run.last_step:
                continue
            for e in r.records:
                outcome = "ERROR" if e.get("error") else ("success" if e.get("success") else "failure")
                rows.append(
                    [
                        run.name,
                        f"H={r.horizon}",
                        e["task"],
                        str(e["init_state"]),
                        outcome,
                        str(e.get("steps", "")),
                        str(e.get("seconds", "")),
                    ]
                )
    if not rows:
        return [
            "<h2>Per episode (last checkpoint)</h2>",
            '<p class="note">No episode records (episodes.jsonl) next to the summaries.</p>',
        ]
    return [
        "<h2>Per episode (last checkpoint)</h2>",
        f"<details><summary>{len(rows)} episodes (click a column to sort)</summary>"
        + _table(["run", "horizon", "task", "init state", "outcome", "steps", "seconds"], rows)
        + "</details>",
    ]


def summary_html(
    runs: list[Run],
    out: Path,
    audits: list[dict[str, Any]],
    videos: list[tuple[str, Path]],
    video_bytes: int = 40 << 20,
) -> str:
    """The summary page (``out`` holds the figures and videos it embeds): its sections in page order."""
    parts = [
        *_page_head(runs),
        *_headline_section(runs),
        *_comparisons_section(runs),
        *_audit_section(runs, audits),
        *_state_range_section(runs),
        *_plan_section(runs),
        *_figures_section(out),
        *_videos_section(videos, out, video_bytes),
        *_per_task_section(runs),
        *_per_episode_section(runs),
        f'<p class="note">Tables: results.csv, audit.csv; provenance: provenance.json.</p>'
        f"<script>{SORT_JS}</script></body></html>",
    ]
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------------- command
def write_report(result_dirs: list[Path], out: Path, videos_per_run: int = 4) -> dict[str, Any]:
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
        steps = [
            ("success_vs_step.png", lambda p: plot_success(runs, p)),
            ("heatmap_last.png", lambda p: plot_heatmaps(runs, p, "last")),
            ("heatmap_best.png", lambda p: plot_heatmaps(runs, p, "best")),
            ("training.png", lambda p: plot_training(runs, p)),
            ("rollouts.png", lambda p: plot_rollouts(videos, p)),
        ]
        for name, draw in track(steps, desc="report", unit="figure"):
            draw(tmp / name)
        (tmp / "results.csv").write_text(_csv_text(results, RESULT_COLUMNS))
        (tmp / "audit.csv").write_text(_csv_text(audits, ("run",) + AUDIT_COLUMNS))
        (tmp / "provenance.json").write_text(json.dumps(provenance(runs), indent=2) + "\n")
        (tmp / "videos").mkdir()
        for run, video in videos:
            shutil.copy2(video, tmp / "videos" / f"{video_label(run, video)}.mp4")
        (tmp / "summary.html").write_text(summary_html(runs, tmp, audits, videos))
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
