"""The paired comparisons a report shows (and the results bundles quote, rdt/bundle.py): horizons within a run,
runs at equal horizons, runs at their best horizons, and each run against open-loop replay of its demos, all on
the same (task, init state) pairs and Holm-adjusted together. The statistics: rdt/report_stats.py."""

from __future__ import annotations

from rdt import report_stats as rs
from rdt.report.collect import Run, is_replay, replay_baselines


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
