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
rollouts.png (frames of successful and failed rollouts) and videos/ (those rollouts' videos).

example:
  python -m rdt report --results results/current results/improved --out results/report
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import platform
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rdt import fingerprint, plan
from rdt.audit import audit
from rdt.errors import UserError
from rdt.utils.atomic import atomic_dir
from rdt.utils.progress import track
from rdt.utils.versions import package_versions

STEP_DIR = re.compile(r"^step-(\d+)$")
HORIZON_DIR = re.compile(r"^h(\d+)$")
METRIC_COLUMNS = ("step", "loss", "lr", "grad_norm", "sample_mse")
RESULT_COLUMNS = ("run", "step", "horizon", "task", "episodes", "successes", "failures", "errors", "success_rate",
                  "ci95_low", "ci95_high")
PACKAGES = ("torch", "numpy", "diffusers", "transformers", "accelerate", "mujoco", "hf-libero", "snakemake",
            "matplotlib")
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
        return self.summary["overall"]

    def rate(self, task: str | None = None) -> float | None:
        counts = self.overall if task is None else self.summary["tasks"].get(task)
        return None if counts is None else counts["success_rate"]


@dataclass
class Run:
    name: str
    folder: Path
    settings: dict[str, Any] | None
    metrics: list[dict[str, float | None]]
    results: list[Result] = field(default_factory=list)

    @property
    def steps(self) -> list[int]:
        return sorted({r.step for r in self.results})

    @property
    def horizons(self) -> list[int]:
        return sorted({r.horizon for r in self.results})

    @property
    def tasks(self) -> list[str]:
        return sorted({t for r in self.results for t in r.summary["tasks"]})

    def result(self, step: int, horizon: int) -> Result | None:
        return next((r for r in self.results if r.step == step and r.horizon == horizon), None)

    def best_step(self) -> int:
        """Step with the highest mean success rate over the horizons (the later step on ties)."""
        def mean_rate(step: int) -> float:
            rates = [r.rate() for r in self.results if r.step == step and r.rate() is not None]
            return sum(rates) / len(rates) if rates else -1.0
        return max(self.steps, key=lambda s: (mean_rate(s), s))


# ---------------------------------------------------------------------------------------------------- reading
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None


def read_metrics(path: Path) -> list[dict[str, float | None]]:
    """Rows of metrics.csv as floats (empty cells -> None); missing file -> no rows."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("step", "loss", "lr") if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{path}: missing column(s) {missing}; expected columns {', '.join(METRIC_COLUMNS)}")
        rows = []
        for row in reader:
            rows.append({c: (float(row[c]) if row.get(c) not in (None, "") else None) for c in METRIC_COLUMNS})
    return rows


def read_run(folder: Path) -> Run:
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"--results {folder}: not a folder (expected a run folder with eval/step-<S>/h<H>/)")
    settings = plan.read_settings(folder)           # the settings document of rdt.plan (None when absent)
    run = Run(folder.name, folder, settings, read_metrics(plan.train_folder(folder, settings) / "metrics.csv"))
    for step_dir in sorted((folder / "eval").glob("step-*")):
        m = STEP_DIR.match(step_dir.name)
        if not m:
            continue
        for h_dir in sorted(step_dir.glob("h*")):
            mh = HORIZON_DIR.match(h_dir.name)
            summary_path = h_dir / "summary.json"
            if not mh or not summary_path.is_file():
                continue
            summary = _read_json(summary_path)
            for key in ("overall", "tasks"):
                if key not in summary:
                    raise UserError(f"{summary_path}: missing key {key!r} (expected rdt evaluate's summary.json)")
            run.results.append(Result(int(m.group(1)), int(mh.group(1)), h_dir, summary))
    run.results.sort(key=lambda r: (r.step, r.horizon))
    return run


# ---------------------------------------------------------------------------------------------------- tables
def result_rows(runs: list[Run]) -> list[dict[str, Any]]:
    rows = []
    for run in runs:
        for r in run.results:
            scopes = [("overall", r.overall)] + sorted(r.summary["tasks"].items())
            for task, c in scopes:
                ci = c.get("ci95") or [None, None]
                rows.append({"run": run.name, "step": r.step, "horizon": r.horizon, "task": task,
                             "episodes": c["episodes"], "successes": c["successes"], "failures": c["failures"],
                             "errors": c["errors"], "success_rate": c["success_rate"], "ci95_low": ci[0],
                             "ci95_high": ci[1]})
    return rows


def audit_rows(runs: list[Run]) -> list[dict[str, Any]]:
    rows = []
    for run in runs:
        s = run.settings or {}
        if "train" not in s:
            continue
        for row in audit(s["train"], s.get("gpus", 0), s.get("exec_horizons", run.horizons)):
            rows.append({"run": run.name, **row.as_dict()})
    return rows


def _csv_text(rows: list[dict[str, Any]], columns: tuple[str, ...] | list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: ("" if row.get(k) is None else row[k]) for k in columns})
    return buf.getvalue()


def provenance(runs: list[Run]) -> dict[str, Any]:
    versions = package_versions(PACKAGES)
    code = {m: fingerprint.fingerprint(m) for m in STAGE_MODULES if fingerprint.closure(m)}
    return {
        "report": {"versions": versions, "code_fingerprints": code, "machine": platform.platform()},
        "runs": {run.name: {
            "settings": run.settings,
            "results": [{"step": r.step, "horizon": r.horizon, "checkpoint": r.summary.get("checkpoint"),
                         "device": r.summary.get("device"), "versions": r.summary.get("versions"),
                         "settings": r.summary.get("settings"), "info": r.summary.get("info"),
                         "overall": r.overall} for r in run.results],
        } for run in runs},
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


def plot_success(runs: list[Run], path: Path) -> None:
    """Success rate vs step, one line per execution horizon with its 95% Wilson band, one panel per run."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 3.8), squeeze=False, sharey=True)
    for ax, run in zip(axes[0], runs):
        for h in run.horizons:
            rs = [r for r in run.results if r.horizon == h and r.rate() is not None]
            steps = [r.step for r in rs]
            ax.plot(steps, [r.rate() for r in rs], marker="o", label=f"H={h}")
            lo = [r.overall["ci95"][0] for r in rs]
            hi = [r.overall["ci95"][1] for r in rs]
            ax.fill_between(steps, lo, hi, alpha=0.2)
        n = run.results[0].overall["episodes"] if run.results else 0
        ax.set(title=f"{run.name} ({n} episodes per point)", xlabel="training step", ylim=(-0.03, 1.03))
        ax.grid(alpha=0.3)
        ax.legend(title="execution horizon", fontsize=8)
    axes[0][0].set_ylabel("success rate (95% Wilson band)")
    _save(fig, path)


def plot_heatmaps(runs: list[Run], path: Path, which: str) -> None:
    """Success per task x horizon at the last (``which="last"``) or best checkpoint of each run."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(runs), figsize=(3 + 1.1 * max(len(r.horizons) for r in runs) * len(runs),
                                                    1.5 + 0.45 * max(len(r.tasks) for r in runs)),
                             squeeze=False)
    for ax, run in zip(axes[0], runs):
        step = run.steps[-1] if which == "last" else run.best_step()
        grid = [[_nan(run.result(step, h).rate(t) if run.result(step, h) else None) for h in run.horizons]
                for t in run.tasks]
        im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(run.horizons)), [f"H={h}" for h in run.horizons])
        ax.set_yticks(range(len(run.tasks)), [_short(t) for t in run.tasks], fontsize=7)
        for i, row in enumerate(grid):
            for j, v in enumerate(row):
                ax.text(j, i, "-" if math.isnan(v) else f"{v:.2f}", ha="center", va="center",
                        color="white" if not math.isnan(v) and v < 0.5 else "black", fontsize=8)
        ax.set_title(f"{run.name}: {which} checkpoint (step {step})", fontsize=9)
    fig.colorbar(im, ax=list(axes[0]), label="success rate")
    _save(fig, path)


def plot_training(runs: list[Run], path: Path) -> None:
    """Training loss, learning rate and held-out sample MSE vs step, one line per run."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.6))
    for run in runs:
        if not run.metrics:
            continue
        for ax, col in zip(axes, ("loss", "lr", "sample_mse")):
            pts = [(m["step"], m[col]) for m in run.metrics if m[col] is not None]
            if pts:
                ax.plot(*zip(*pts), marker="." if col == "sample_mse" else None, label=run.name)
    for ax, title in zip(axes, ("training loss", "learning rate", "sample MSE, action slots (held-out episodes)")):
        ax.set(title=title, xlabel="step")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    losses = [m["loss"] for r in runs for m in r.metrics if m["loss"] is not None]
    if losses and min(losses) > 0:
        axes[0].set_yscale("log")
    _save(fig, path)


def pick_videos(runs: list[Run], per_run: int) -> list[tuple[str, Path]]:
    """Up to ``per_run`` rollout videos per run from its last checkpoint, alternating successes and failures."""
    chosen = []
    for run in runs:
        if not run.steps:
            continue
        last = [r for r in run.results if r.step == run.steps[-1]]
        videos = sorted((v for r in last for v in (r.folder / "videos").glob("*.mp4")),
                        key=lambda v: (v.name, v.parent.parent.name))
        good = [v for v in videos if v.stem.endswith("__success")]
        bad = [v for v in videos if v.stem.endswith("__failure")]
        mixed = [v for pair in zip(good, bad) for v in pair] + good[len(bad):] + bad[len(good):]
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
            head = f"{run} {h_dir.parent.name} H={h_dir.name[1:]} {outcome}\n{_short(task, 40)}\n" if j == 0 else ""
            axes[i][j].set_title(f"{head}t={k}", fontsize=7, loc="left" if j == 0 else "center")
    if not videos:
        axes[0][1].text(0.5, 0.5, "no rollout videos", ha="center", va="center")
    _save(fig, path)


def video_label(run: str, video: Path) -> str:
    """``<run>__step-<S>__h<H>__<task>__init<i>__<outcome>`` of a video at eval/step-<S>/h<H>/videos/."""
    h_dir = video.parent.parent
    return f"{run}__{h_dir.parent.name}__{h_dir.name}__{video.stem}"


def _nan(v: float | None) -> float:
    return float("nan") if v is None else v


def _short(task: str, width: int = 48) -> str:
    return task if len(task) <= width else task[: width - 3] + "..."


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
        steps = [("success_vs_step.png", lambda p: plot_success(runs, p)),
                 ("heatmap_last.png", lambda p: plot_heatmaps(runs, p, "last")),
                 ("heatmap_best.png", lambda p: plot_heatmaps(runs, p, "best")),
                 ("training.png", lambda p: plot_training(runs, p)),
                 ("rollouts.png", lambda p: plot_rollouts(videos, p))]
        for name, draw in track(steps, desc="report", unit="figure"):
            draw(tmp / name)
        (tmp / "results.csv").write_text(_csv_text(results, RESULT_COLUMNS))
        (tmp / "audit.csv").write_text(_csv_text(audits, ("run", "setting", "recipe", "value", "formula", "flag")))
        (tmp / "provenance.json").write_text(json.dumps(provenance(runs), indent=2) + "\n")
        (tmp / "videos").mkdir()
        for run, video in videos:
            shutil.copy2(video, tmp / "videos" / f"{video_label(run, video)}.mp4")
    return {"runs": names, "results": len(results), "deviations": sum(r["flag"] != "ok" for r in audits)}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results", nargs="+", required=True, metavar="DIR",
                   help="run folders (results/<run>) holding eval/step-<S>/h<H>/summary.json")
    p.add_argument("--out", required=True, metavar="DIR", help="report folder to write (replaced atomically)")
    p.add_argument("--videos", type=int, default=4, metavar="N",
                   help="rollout videos shown per run, from its last checkpoint (default 4)")


def main(args: argparse.Namespace) -> int:
    if args.videos < 0:
        raise UserError(f"--videos {args.videos}: expected a number >= 0")
    info = write_report(args.results, Path(args.out), args.videos)
    print(f"report for {', '.join(info['runs'])}: {info['results']} result rows, "
          f"{info['deviations']} settings deviate from the RDT-1B recipe -> {args.out}")
    return 0
