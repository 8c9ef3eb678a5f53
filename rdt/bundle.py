"""Results bundles: the evidence behind every number README and docs quote, small enough to commit.

A bundle (``docs/results/<name>/``) is a copy of what a workflow run produced, minus checkpoints and videos, in the
results layout (rdt.layout), so ``rdt report`` and :func:`tables` read it as they read ``results/``:

    bundle.json                                  the command, its duration, the commit, the config and the targets
    config.yaml                                  the workflow configuration the run used
    <target>/settings.json                       each run's settings document (rdt.plan)
    <target>/eval/step-<S>/h<H>/summary.json     + episodes.jsonl (and replay_plan.json of a replay run)
    train/<key>/metrics.csv                      + export/step-<S>/pipeline.json of the evaluated exports
    cache/demos/<key>/expert_summary.json        which init states the demos came from
    benchmarks/<rule>/...tsv                     Snakemake's per-job wall time and memory

:func:`tables` turns a bundle into the markdown that README and docs show between ``<!-- results:NAME -->`` and
``<!-- /results:NAME -->`` markers (``scripts/results_tables.py`` rewrites them; a test checks they are current).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from rdt import layout
from rdt.errors import UserError
from rdt.utils.atomic import atomic_dir
from rdt.utils.files import read_json
from rdt.utils.versions import source_commit

BUNDLE_FILE = "bundle.json"
MARKER = re.compile(
    r"(<!-- results:(?P<name>[\w.-]+)(?::(?P<part>[\w-]+))? -->\n)(?P<body>.*?)(<!-- /results -->)", re.S
)


def make_bundle(results: Path, targets: list[str], out: Path, meta: dict[str, Any], config: Path | None = None) -> Path:
    """Copy the evidence of ``targets`` under ``results`` into the bundle folder ``out`` (replaced atomically)."""
    from rdt.evaluation.ledger import EPISODES_FILE
    from rdt.libero.expert import SUMMARY_FILE as EXPERT_SUMMARY
    from rdt.model.checkpoint import PIPELINE_FILE
    from rdt.plan import read_settings, train_folder
    from rdt.replay import PLAN_FILE
    from rdt.report.collect import listed_evaluations
    from rdt.training.run_folder import METRICS

    results, out = Path(results), Path(out)
    missing = [t for t in targets if not layout.settings_file(layout.run_dir(results, t)).is_file()]
    if missing:
        raise UserError(f"{results}: no settings.json for target(s) {missing}; run the workflow first")
    with atomic_dir(out) as tmp:
        for t in targets:
            src = layout.run_dir(results, t)
            layout.run_dir(tmp, t).mkdir(parents=True)
            shutil.copy2(layout.settings_file(src), layout.settings_file(layout.run_dir(tmp, t)))
            for step, horizon, summary in listed_evaluations(src, read_settings(src)):
                dest = layout.eval_dir(layout.run_dir(tmp, t), step, horizon)
                dest.mkdir(parents=True)
                shutil.copy2(summary, dest / summary.name)
                for name in (EPISODES_FILE, PLAN_FILE):  # beside the summary file
                    if (summary.parent / name).is_file():
                        shutil.copy2(summary.parent / name, dest / name)
            doc = read_settings(src)
            if doc and doc.get("train_folder"):
                train = train_folder(src, doc)
                rel = Path(doc["train_folder"]).resolve().relative_to(results.resolve())
                dest = tmp / rel
                dest.mkdir(parents=True, exist_ok=True)
                if (train / METRICS).is_file():
                    shutil.copy2(train / METRICS, dest / METRICS)
                for step, _, _ in listed_evaluations(src, doc):
                    pipeline = layout.export_dir(train, step) / PIPELINE_FILE
                    if pipeline.is_file():
                        target = layout.export_dir(dest, step)
                        target.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(pipeline, target / PIPELINE_FILE)
        for summary in layout.cache_dir(results, layout.DEMOS).glob(f"*/{EXPERT_SUMMARY}"):
            dest = tmp / summary.relative_to(results)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(summary, dest)
        if layout.benchmarks_dir(results).is_dir():
            shutil.copytree(layout.benchmarks_dir(results), layout.benchmarks_dir(tmp))
        if config is not None:
            shutil.copy2(config, tmp / "config.yaml")
        doc = {"targets": targets, "commit": source_commit()["commit"], **meta}
        (tmp / BUNDLE_FILE).write_text(json.dumps(doc, indent=2) + "\n")
    return out


def read_bundle(folder: Path) -> tuple[dict, list]:
    """(bundle.json, the report's runs of its targets in order)."""
    from rdt.report.collect import read_run

    folder = Path(folder)
    meta = read_json(folder / BUNDLE_FILE, "not found (expected a results bundle: scripts/make_bundle.py)")
    return meta, [read_run(folder / t) for t in meta["targets"]]


# ------------------------------------------------------------------------------------------------ tables
def _cell(result) -> str:
    if result is None:
        return "-"
    o = result.overall
    valid = o["episodes"] - o["errors"]
    lo, hi = o.get("ci95") or (None, None)
    rate = "n/a" if o["success_rate"] is None else f"{100 * o['success_rate']:.0f}%"
    ci = "" if lo is None else f" [{100 * lo:.0f}, {100 * hi:.0f}]"
    return f"{o['successes']}/{valid} = {rate}{ci}"


def success_table(runs: list) -> str:
    """Success per run (rows) and execution horizon (columns) at each run's last checkpoint, 95 % Wilson
    intervals; a replay run fills the open-loop column."""
    from rdt.report.collect import horizon_label

    horizons = sorted({h for r in runs for h in r.horizons}, key=lambda h: (h == 0, h))  # open loop last
    head = "| run | " + " | ".join(horizon_label(h) for h in horizons) + " |"
    lines = [head, "|---|" + "---|" * len(horizons)]
    for run in runs:
        cells = [_cell(run.result(run.last_step, h)) if run.results else "not evaluated" for h in horizons]
        lines.append(f"| {run.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def comparison_lines(runs: list) -> str:
    """The report's paired comparisons (Holm-adjusted together), one bullet each, grouped as on the page."""
    from rdt.report.compare import beats, comparisons

    comp = comparisons([r for r in runs if r.results])
    titles = {
        "replay": "Against open-loop replay of the demos",
        "horizons": "Execution horizons within a run",
        "runs": "Runs at equal horizons",
        "best": "Runs at their best horizons",
    }
    out = []
    for key, group in comp.items():
        if not group:
            continue
        out += ["", f"{titles[key]}:", ""]
        for c in group:
            mark = ""
            if key == "replay" and not beats(c):
                mark = " **(does not beat replay)**"
            out.append(f"- {c.scope}: {c.verdict()}{mark}")
    return "\n".join(out).lstrip("\n")


def cost_lines(meta: dict, folder: Path) -> str:
    """What the run cost: the command, its wall time, and per rule the summed job seconds (benchmarks)."""
    lines = [f"Command: `{meta.get('command', '?')}`"]
    if meta.get("seconds") is not None:
        m, s = divmod(int(meta["seconds"]), 60)
        h, m = divmod(m, 60)
        lines.append(
            f"Wall time: {h} h {m:02d} min {s:02d} s on {meta.get('machine', 'an unnamed machine')}"
            f" (commit {str(meta.get('commit'))[:10]})."
        )
    bench = layout.benchmarks_dir(Path(folder))
    if bench.is_dir():
        per_rule = {}
        for tsv in sorted(bench.rglob("*.tsv")):
            rule = tsv.relative_to(bench).parts[0]
            rows = tsv.read_text().splitlines()
            if len(rows) >= 2:
                per_rule.setdefault(rule, []).append(float(rows[1].split("\t")[0]))
        if per_rule:
            cells = [f"{rule} {len(v)} job(s) {sum(v) / 60:.1f} min" for rule, v in sorted(per_rule.items())]
            lines.append("Job time by rule (Snakemake benchmarks, summed): " + "; ".join(cells) + ".")
    return "\n\n".join(lines)


def candidates_table(folder: Path) -> str:
    """The replay measurement of candidate study tasks (scripts/replay_candidates.py): per task the expert's demos,
    open-loop replay success on the held-out init states with its 95 % interval, and how much the init states vary."""
    from rdt.libero.expert import SUMMARY_FILE as EXPERT_SUMMARY
    from rdt.report_stats import wilson

    head = ["suite", "task", "expert demos (successes/attempts)", "replay success on init states 0..",
            "varying init-state dims", "largest std"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|---|---|---|---|---|---|"]
    for sub in sorted(p for p in Path(folder).iterdir() if p.is_dir()):
        expert = read_json(sub / EXPERT_SUMMARY)["tasks"][0]
        demos = f"{expert['successes']}/{expert['attempts']}"
        if not (sub / layout.SUMMARY).is_file():
            lines.append(f"| {expert['suite']} | {expert['task']} | {demos} | no demo to replay | - | - |")
            continue
        o = read_json(sub / layout.SUMMARY)["overall"]
        facts = read_json(sub / "candidate.json")
        n = o["episodes"] - o["errors"]
        lo, hi = wilson(o["successes"], n) or (0.0, 0.0)
        rate = f"{o['successes']}/{n} = {100 * o['successes'] / n:.0f}% [{100 * lo:.0f}, {100 * hi:.0f}]"
        variation = f"{facts['varying_dims']} of {facts['dims']} | {facts['max_std']:.3f}"
        lines.append(f"| {expert['suite']} | {expert['task']} | {demos} | {rate} | {variation} |")
    return "\n".join(lines)


#: the learning check rolls each training out with 4 evaluation seeds at H = 8 and at H = 16
CHECK_EVAL_SEEDS = 4


def learning_check_passes(h8: int, h16: int) -> bool:
    """The learning check's criterion (tests/test_learning.py), over one training's four evaluation seeds: at least
    2 of the 4 rollouts succeed at H = 8 and 3 of all 8 at H = 8 and 16."""
    return h8 >= 2 and h8 + h16 >= 3


def seeds_table(runs: list) -> str:
    """Per training seed (runs that share a training differ in eval.seed): successes at each horizon over its
    evaluation seeds, and whether the learning check's criterion holds; the last line counts the seeds that pass."""
    by_seed: dict[int, dict[int, list[bool]]] = {}
    for run in runs:
        if not run.results:
            continue
        seed = int(((run.settings or {}).get("train") or {}).get("seed", 0))
        for h in run.horizons:
            result = run.result(run.last_step, h)
            by_seed.setdefault(seed, {}).setdefault(h, []).extend(r["success"] for r in result.records)
    horizons = sorted({h for cells in by_seed.values() for h in cells})
    head = "| training seed | " + " | ".join(f"H={h} (evaluation seeds)" for h in horizons) + " | the check |"
    lines = [head, "|---|" + "---|" * (len(horizons) + 1)]
    passed = incomplete = 0
    for seed, cells in sorted(by_seed.items()):
        counts = {h: (sum(cells.get(h, [])), len(cells.get(h, []))) for h in horizons}
        ok = learning_check_passes(counts.get(8, (0, 0))[0], counts.get(16, (0, 0))[0])
        rolled = min(counts.get(8, (0, 0))[1], counts.get(16, (0, 0))[1])
        if not ok and rolled < CHECK_EVAL_SEEDS:  # a cut run: the missing rollouts could still make it pass
            verdict = f"incomplete ({rolled} of {CHECK_EVAL_SEEDS} evaluation seeds)"
            incomplete += 1
        else:
            verdict = "passes" if ok else "fails"
        passed += ok
        row = [f"{s}/{n}" for s, n in counts.values()]
        lines.append(f"| {seed} | " + " | ".join(row) + f" | {verdict} |")
    lines.append("")
    complete = len(by_seed) - incomplete
    line = f"The check passes for {passed} of {complete} training seeds"
    lines.append(line + (f" ({incomplete} more incomplete)." if incomplete else "."))
    return "\n".join(lines)


def tables(folder: Path) -> dict[str, str]:
    """The generated parts of a bundle: ``table`` (success per run and horizon), ``comparisons``, ``cost``, ``seeds``
    (the learning check per training seed); for the
    candidate-task measurement (no bundle.json) its ``table``."""
    if not (Path(folder) / BUNDLE_FILE).is_file() and any(Path(folder).glob("*/candidate.json")):
        return {"table": candidates_table(folder)}
    meta, runs = read_bundle(folder)
    return {
        "table": success_table(runs),
        "comparisons": comparison_lines(runs),
        "cost": cost_lines(meta, folder),
        "seeds": seeds_table(runs),
    }


def render(text: str, bundles: Path) -> str:
    """``text`` with every ``<!-- results:NAME[:PART] -->`` ... ``<!-- /results -->`` block filled from the bundle
    ``bundles/NAME`` (PART: table, comparisons, cost or seeds; default table)."""
    cache: dict[str, dict[str, str]] = {}

    def fill(m: re.Match) -> str:
        name, part = m.group("name"), m.group("part") or "table"
        if name not in cache:
            cache[name] = tables(Path(bundles) / name)
        if part not in cache[name]:
            raise UserError(f"results marker {name}:{part}: no such part (expected {', '.join(cache[name])})")
        return f"{m.group(1)}{cache[name][part]}\n{m.group(5)}"

    return MARKER.sub(fill, text)


def plot_bundle(folder: Path, path: Path) -> None:
    """Bar chart of success per run and horizon (last checkpoints) with 95 % intervals; replay as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rdt.report.collect import is_replay

    _, runs = read_bundle(folder)
    runs = [r for r in runs if r.results]
    trained = [r for r in runs if not is_replay(r)]
    horizons = sorted({h for r in trained for h in r.horizons})
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(trained) * max(len(horizons), 1) ** 0.5, 3.6))
    width = 0.8 / max(len(horizons), 1)
    for k, h in enumerate(horizons):
        xs, ys, err = [], [], [[], []]
        for i, run in enumerate(trained):
            r = run.result(run.last_step, h)
            if r is None or r.rate() is None:
                continue
            lo, hi = r.overall["ci95"]
            xs.append(i + (k - (len(horizons) - 1) / 2) * width)
            ys.append(r.rate())
            err[0].append(r.rate() - lo)
            err[1].append(hi - r.rate())
        ax.bar(xs, ys, width, yerr=err, capsize=2, label=f"H={h}")
    for run in runs:
        if is_replay(run) and run.results:
            ax.axhline(
                run.results[-1].rate(), color="0.3", linestyle="--", linewidth=1.2, label=f"{run.name} (open loop)"
            )
    ax.set_xticks(range(len(trained)), [r.name for r in trained], rotation=20, ha="right")
    ax.set(ylim=(0, 1.05), ylabel="success (95% Wilson)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
