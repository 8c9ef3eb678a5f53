"""The summary page (summary.html): one self-contained HTML page that answers the user's questions first.

In page order: the headline success per run and horizon at the last checkpoint with 95% intervals and the honest
"best" checkpoint, the paired comparisons with a verdict line each (rdt.report.compare), the configuration audit
with deviations highlighted, state-range warnings, each run's evaluation plan and its cost, the figures
(rdt.report.names.FIGURES, embedded), the rollout videos (embedded within a size budget, else linked), and the
per-task and per-episode tables; a click on a column header sorts a table.
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Any

from rdt import layout
from rdt.report.collect import Run, horizon_label, is_replay, natural_key
from rdt.report.compare import beats, comparisons
from rdt.report.markup import CSS, SORT_JS, embedded_image, esc, html_table, interval, pct, video_tag
from rdt.report.names import (
    AUDIT_TABLE,
    FIGURES,
    PROVENANCE,
    RESULTS_TABLE,
    TRAINING_SECTION,
    VIDEOS,
    video_file,
    video_prefix,
)


def steps_to_success(records: list[dict[str, Any]]) -> dict[str, float] | None:
    """Median and range of the simulator steps the successful episodes took (None when none succeeded): a policy
    that re-plans more often may succeed as often but slower, or faster."""
    steps = [int(r["steps"]) for r in records if r.get("success") and r.get("steps") is not None]
    if not steps:
        return None
    return {"median": statistics.median(steps), "min": min(steps), "max": max(steps)}


def _steps_cell(s: dict[str, float] | None) -> str:
    return "-" if s is None else f"{s['median']:g} ({s['min']}-{s['max']})"


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
                    "steps_to_success": steps_to_success(r.records),
                }
            )
    return rows


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
        f"<p><b>{esc(run.name)}</b>: {len(c['steps'])} checkpoint(s) evaluated (steps "
        f"{esc(', '.join(map(str, c['steps'])))}), {c['tasks']} task(s), episodes per task "
        f"{esc(', '.join(f'{v} at {s}' for s, v in sorted(eps.items())))}; at most {c['max_steps']} policy steps "
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
        f"s/call ({esc(rates.get('source'))}).</span></p>"
    )
    return text + html_table(
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
        f"{esc(', '.join(r.name for r in runs))}</title><style>{CSS}</style></head><body>",
        "<h1>RDT fine-tuning on LIBERO: summary</h1>",
        '<p class="note">Runs: '
        + ", ".join(f"<b>{esc(r.name)}</b> (last checkpoint: step {r.last_step})" for r in runs)
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
        f'<p class="warn"><b>No episode succeeded</b> in any evaluation ({len(results)} evaluation(s), {episodes} '
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
        return f"the last (step {sel.best}): {rep_s}/{rep_n} = {pct(sel.report_rate)} on odd init states"
    return f"step {sel.best}: {rep_s}/{rep_n} = {pct(sel.report_rate)} on odd init states" + (
        f" (last checkpoint on the same odd init states: {last[0]}/{last[1]})" if last else ""
    )


def _links(run: Run, step: int, horizon: int, out: Path) -> str:
    """Links of one result row: the run's settings document and the report's videos of that step and horizon
    (relative to the page, so they work where the results folder is)."""
    links = []
    settings = layout.settings_file(run.folder)
    if settings.is_file():
        links.append(f'<a href="{esc(os.path.relpath(settings, out))}">settings</a>')
    prefix = video_prefix(run.name, layout.step_name(step), layout.horizon_name(horizon))
    for video in sorted((out / VIDEOS).glob(f"{prefix}*.mp4")) if (out / VIDEOS).is_dir() else []:
        outcome = video.stem.rsplit("__", 1)[-1]
        links.append(f'<a href="{esc(VIDEOS)}/{esc(video.name)}">video ({esc(outcome)})</a>')
    return " ".join(links)


def _headline_section(runs: list[Run], out: Path) -> list[str]:
    """1. success per run and execution horizon at the last checkpoint, with the best checkpoint and links to the
    run's settings and its videos at that horizon."""
    by_name = {r.name: r for r in runs}
    rows = [
        [
            esc(h["run"]),
            esc(horizon_label(h["horizon"])),
            esc(pct(h["rate"])),
            esc(interval(h["ci95"])),
            esc(f"{h['successes']}/{h['valid']}" + (f" ({h['errors']} errors)" if h["errors"] else "")),
            esc(_steps_cell(h["steps_to_success"])),
            esc(_best_cell(h)),
            _links(by_name[h["run"]], h["step"], h["horizon"], out),
        ]
        for h in headline_rows(runs)
    ]
    return [
        "<h2>Success per run and execution horizon (last checkpoint)</h2>",
        html_table(
            [
                "run",
                "horizon",
                "success",
                "95% CI (Wilson)",
                "successes / episodes",
                "steps to success: median (range)",
                "best checkpoint (chosen on even init states, reported on odd)",
                "settings, videos",
            ],
            rows,
            raw=True,
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
                esc(f"{c.a} ({pct(c.stats.rate_a)} vs {pct(c.stats.rate_b)} on {c.stats.n} pairs)") for c in below
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
            parts.append(f'<p class="verdict"><span class="{cls}">{esc(c.scope)}: {esc(v)}</span></p>')
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
        cells = [esc(st), esc(first["recipe"]), esc(first["source"]), esc(first["original"])]
        for n in names:
            a = by.get((n, st))
            if a is None:
                cells.append("")
                continue
            cls = {"DEVIATES": "dev", "comparison": "cmp"}.get(a["flag"], "ok")
            formula = f'<br><span class="note">{esc(a["formula"])}</span>' if a["formula"] else ""
            cells.append(f'<span class="{cls}">{esc(a["value"])} ({esc(a["flag"])})</span>{formula}')
        rows.append(cells)
    table = html_table(["setting", "recipe", "source", "original finetune.sh"] + names, rows, raw=True)
    # colour the cells by flag
    for cls in ("dev", "cmp", "ok"):
        table = table.replace(f'<td><span class="{cls}">', f'<td class="{cls}"><span class="{cls}">')
    deviating = sorted({a["setting"] for a in audits if a["flag"] == "DEVIATES"})
    line = (
        f'<span class="dev">{len(deviating)} setting(s) deviate from the recipe</span>: {esc(", ".join(deviating))}'
        if deviating
        else "every setting follows the recipe"
    )
    return [
        "<h2>Configuration audit against the RDT-1B recipe</h2>",
        folded(f"{line} (the whole table: {len(settings)} settings)", table),
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
        ("<tr class='dev'>" if bad else "<tr>") + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>"
        for bad, row in sr
    )
    far = sum(bad for bad, _ in sr)
    return [
        "<h2>Observed states outside the training range</h2>",
        f"<details{'' if far else ' open'}><summary>{far} of {len(sr)} evaluation(s) over 10%</summary>"
        '<table class="sortable"><thead><tr><th>run</th><th>step</th><th>horizon</th><th>policy calls '
        "with a state far outside</th><th>share</th><th>slots (calls)</th></tr></thead><tbody>"
        f"{body}</tbody></table></details>",
        '<p class="note">A state is far outside when it lies beyond the training min/max by more than '
        "half the range (a distribution shift between the training data and the simulator); rows over "
        "10% are red.</p>",
    ]


def _plan_section(runs: list[Run]) -> list[str]:
    """5. each run's evaluation plan and its cost (none when no run recorded one)."""
    plans = [_plan_html(r) for r in runs]
    if not any(plans):
        return []
    return ["<h2>Evaluation plan and its cost</h2>" + folded("what was evaluated, and its cost", "".join(plans))]


def _figures_section(out: Path, section: str, title: str) -> list[str]:
    """The figures of one page ``section`` (rdt.report.names.FIGURES) written into ``out``, embedded."""
    figures = [f for f in FIGURES if f.section == section and (out / f.file).is_file()]
    if not figures:
        return []
    return [f"<h2>{esc(title)}</h2>"] + [
        f'<div class="fig"><p><b>{esc(f.caption)}</b></p>{embedded_image(out / f.file, f.caption)}</div>'
        for f in figures
    ]


def folded(summary: str, body: str, open_: bool = False) -> str:
    """A section body folded under a one-line summary (long tables stay out of the way until asked for)."""
    return f"<details{' open' if open_ else ''}><summary>{summary}</summary>{body}</details>"


def _videos_section(videos: list[tuple[str, Path]], out: Path, video_bytes: int) -> list[str]:
    """7. the rollout videos, embedded while ``video_bytes`` last, then linked (none without videos)."""
    if not videos:
        return []
    parts = ["<h2>Rollouts (last checkpoint)</h2><div class='videos'>"]
    budget = [video_bytes]
    for run, video in videos:
        name = video_file(run, video)
        path = out / VIDEOS / name
        h_dir = video.parent.parent
        task, init, outcome = video.stem.rsplit("__", 2)
        parts.append(
            f"<figure>{video_tag(path if path.is_file() else video, name, budget)}<figcaption>"
            f"{esc(run)} {esc(h_dir.parent.name)} H={esc(h_dir.name[1:])} {esc(init)} "
            f"<b>{esc(outcome)}</b><br>{esc(task)}</figcaption></figure>"
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
                "" if c is None else f"{pct(c['success_rate'])} ({c['successes']}/{c['episodes'] - c['errors']})"
            )
        rows.append(row)
    table = html_table(["task"] + [f"{run.name} H={h}" for run, h in cols], rows)
    return ["<h2>Per task (last checkpoint)</h2>", folded(f"{len(tasks)} tasks", table, open_=len(tasks) <= 10)]


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
        + html_table(["run", "horizon", "task", "init state", "outcome", "steps", "seconds"], rows)
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
        *_headline_section(runs, out),
        *_figures_section(out, TRAINING_SECTION, "Did training work?"),
        *_comparisons_section(runs),
        *_audit_section(runs, audits),
        *_state_range_section(runs),
        *_videos_section(videos, out, video_bytes),
        *_figures_section(out, "more", "More figures"),
        *_plan_section(runs),
        *_per_task_section(runs),
        *_per_episode_section(runs),
        f'<p class="note">Tables: {RESULTS_TABLE}, {AUDIT_TABLE}; provenance: {PROVENANCE}.</p>'
        f"<script>{SORT_JS}</script></body></html>",
    ]
    return "\n".join(parts)
