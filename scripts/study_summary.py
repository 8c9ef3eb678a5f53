"""The study's table and figure for docs/study.md, from a finished `snakemake --configfile config/study.yaml` run.

    python scripts/study_summary.py results/study docs/study_results.md docs/study.png

Reads each run's last evaluation (results/<run>/eval/step-<last>/h<H>/episodes.jsonl), writes a markdown table of
success per run and horizon with 95 % Wilson intervals, the paired comparisons (each H vs H=64 within a run, and each
run vs the others at H=8 and H=16; exact McNemar on the same (task, init state) pairs), and a bar chart.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rdt.evaluate import read_episodes  # noqa: E402
from rdt.report_stats import outcomes_from_records, paired, wilson  # noqa: E402


def last_evaluations(results: Path) -> dict[str, dict[int, dict]]:
    """run -> horizon -> outcomes of the run's last evaluated step."""
    out: dict[str, dict[int, dict]] = {}
    for run_dir in sorted(p for p in results.iterdir() if (p / "eval").is_dir()):
        steps = sorted(
            (int(m.group(1)), p) for p in (run_dir / "eval").iterdir() if (m := re.fullmatch(r"step-(\d+)", p.name))
        )
        if not steps:
            continue
        step_dir = steps[-1][1]
        out[run_dir.name] = {
            int(h.name[1:]): outcomes_from_records(read_episodes(h / "episodes.jsonl"))
            for h in sorted(step_dir.glob("h*"), key=lambda p: int(p.name[1:]))
        }
    return out


def pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def main(results: str, table: str, figure: str) -> int:
    evals = last_evaluations(Path(results))
    runs = list(evals)
    horizons = sorted({h for r in evals.values() for h in r})
    lines = ["| run | " + " | ".join(f"H={h}" for h in horizons) + " |", "|---|" + "---|" * len(horizons)]
    for run in runs:
        cells = []
        for h in horizons:
            o = evals[run].get(h, {})
            k, n = sum(o.values()), len(o)
            lo, hi = wilson(k, n) or (0.0, 0.0)
            cells.append(f"{k}/{n} = {pct(k / n) if n else '-'} [{pct(lo)}, {pct(hi)}]")
        lines.append(f"| {run} | " + " | ".join(cells) + " |")
    lines += ["", "Paired comparisons (same task and init states; difference with 95 % CI, exact McNemar p):", ""]

    def row(label_a: str, a: dict, label_b: str, b: dict) -> str:
        s = paired(a, b)
        lo, hi = s.ci95 or (0.0, 0.0)
        return (
            f"- {label_a} vs {label_b}: {pct(s.rate_a)} vs {pct(s.rate_b)}, difference {100 * s.diff:+.0f} "
            f"points [{100 * lo:+.0f}, {100 * hi:+.0f}], p = {s.p_value:.3g} ({s.n} pairs)"
        )

    for run in runs:
        if 64 in evals[run]:
            for h in horizons:
                if h != 64 and h in evals[run]:
                    lines.append(row(f"{run} H={h}", evals[run][h], f"{run} H=64", evals[run][64]))
    for h in (8, 16):
        for i, a in enumerate(runs):
            for b in runs[i + 1 :]:
                if h in evals[a] and h in evals[b]:
                    lines.append(row(f"{a} H={h}", evals[a][h], f"{b} H={h}", evals[b][h]))
    Path(table).write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.8 / max(len(horizons), 1)
    for j, h in enumerate(horizons):
        xs, ys, errs = [], [], [[], []]
        for i, run in enumerate(runs):
            o = evals[run].get(h, {})
            k, n = sum(o.values()), len(o)
            if not n:
                continue
            lo, hi = wilson(k, n)
            xs.append(i + (j - (len(horizons) - 1) / 2) * width)
            ys.append(k / n)
            errs[0].append(k / n - lo)
            errs[1].append(hi - k / n)
        ax.bar(xs, ys, width, yerr=errs, capsize=3, label=f"H={h}")
    ax.set(
        xticks=range(len(runs)),
        xticklabels=runs,
        ylim=(0, 1.05),
        ylabel="success (held-out init states)",
        title="study in miniature: last checkpoint, 95% Wilson intervals",
    )
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(figure, dpi=120)
    print(Path(table).read_text())
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    raise SystemExit(main(*sys.argv[1:]))
