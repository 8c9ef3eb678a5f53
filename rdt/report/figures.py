"""The report's figures (matplotlib, imported only when drawing): success vs step, the per-task heatmaps, the
training curves and frames of rollouts.

Each figure of rdt.report.names.FIGURES is drawn by the function of this module its ``draw`` names, called as
``f(runs, videos, path)`` with the runs (rdt.report.collect) and the rollout videos the page shows
(``collect.pick_videos``); :func:`draw` does that.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

from rdt.report.collect import Run, is_replay, natural_key, replay_baselines
from rdt.report.names import Figure


def draw(figure: Figure, runs: list[Run], videos: list[tuple[str, Path]], path: Path) -> None:
    """Draw ``figure`` (one of rdt.report.names.FIGURES) into ``path``."""
    globals()[figure.draw](runs, videos, path)


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


def _nan(v: float | None) -> float:
    return float("nan") if v is None else v


# ---------------------------------------------------------------------------------------------------- success
def plot_success(runs: list[Run], videos: list[tuple[str, Path]], path: Path) -> None:
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


# ---------------------------------------------------------------------------------------------------- per task
def plot_heatmaps(runs: list[Run], path: Path, which: str) -> None:
    """Success per task x horizon at the last (``which="last"``) or the honest best checkpoint of each run (chosen
    on even init states; a run without a best shows why). Rows: the union of tasks in natural order with their
    full names, once, on the left; one panel per run, sharing the rows."""
    plt = _plt()
    tasks = sorted({t for r in runs for t in r.tasks}, key=natural_key)
    width_names = 0.065 * max(len(t) for t in tasks)  # 8 pt names
    cols = sum(max(len(r.horizons), 1) for r in runs)
    fig, axes = plt.subplots(
        1,
        len(runs),
        figsize=(width_names + 1.5 + 0.8 * cols, 1.6 + 0.3 * len(tasks)),  # rows tall enough for 8 pt names
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
            ax.set_yticks(range(len(tasks)), tasks, fontsize=8)
        ax.tick_params(axis="y", length=0, labelleft=k == 0)
        for i, row in enumerate(grid):  # the number in every cell (as a percentage when there are many rows)
            for j, v in enumerate(row):
                ax.text(
                    j,
                    i,
                    "-" if math.isnan(v) else (f"{v:.2f}" if small else f"{100 * v:.0f}"),
                    ha="center",
                    va="center",
                    color="white" if not math.isnan(v) and v < 0.5 else "black",
                    fontsize=8,
                )
        ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=list(axes[0]), label="success rate", fraction=0.04)
    _save(fig, path)


def plot_heatmap_last(runs: list[Run], videos: list[tuple[str, Path]], path: Path) -> None:
    """Success per task x horizon at each run's last checkpoint."""
    plot_heatmaps(runs, path, "last")


def plot_heatmap_best(runs: list[Run], videos: list[tuple[str, Path]], path: Path) -> None:
    """Success per task x horizon at each run's honest best checkpoint."""
    plot_heatmaps(runs, path, "best")


# ---------------------------------------------------------------------------------------------------- training
def smooth(values: list[float], window: int) -> list[float]:
    """Trailing moving average over ``window`` points (the first points average the points so far)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_training(runs: list[Run], videos: list[tuple[str, Path]], path: Path) -> None:
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


# ---------------------------------------------------------------------------------------------------- rollouts
def plot_rollouts(runs: list[Run], videos: list[tuple[str, Path]], path: Path) -> None:
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
