"""Statistics of the report: paired comparisons and honest checkpoint selection, on per-episode outcomes.

Every evaluation of a suite runs the same (task, init state) pairs (episode i of a task starts from init state i), so
two horizons of one checkpoint, or two runs, are compared **paired**: on the pairs both evaluated, the difference in
success rate with a 95 % confidence interval (Newcombe's hybrid score interval for paired proportions, method 10 of
Newcombe 1998, built from the two Wilson intervals and the phi correlation of the pairs) and the exact McNemar
p-value (two-sided binomial test with p = 1/2 on the discordant pairs). With several comparisons on one page the
verdict uses Holm-adjusted p-values.

Honest selection: the headline is the last checkpoint. A "best" checkpoint is chosen on the **selection half** of the
init states (even init states) and its success is reported on the **report half** (odd init states), so the number
shown was not used to pick it; when every checkpoint ties on the selection half there is no "best".

Everything here is pure Python on mappings ``(task, init_state) -> success`` (episodes with a simulator error are
left out before), so it is tested on constructed records with known answers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

Z_95 = 1.959963984540054
Outcomes = Mapping[tuple[str, int], bool]
ALPHA = 0.05


def wilson(successes: int, n: int, z: float = Z_95) -> tuple[float, float] | None:
    """95 % Wilson score interval of ``successes / n``; None for n = 0."""
    if n == 0:
        return None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: binomial test of ``min(b, c)`` out of ``b + c`` discordant pairs, p = 1/2."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (same order as given)."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


@dataclass(frozen=True)
class Paired:
    """Paired comparison of A and B on the pairs both evaluated. ``both``: pairs A and B solved; ``only_a``: A solved
    and B failed; ``only_b``: B solved and A failed; ``neither``."""

    both: int
    only_a: int
    only_b: int
    neither: int

    @property
    def n(self) -> int:
        return self.both + self.only_a + self.only_b + self.neither

    @property
    def rate_a(self) -> float | None:
        return (self.both + self.only_a) / self.n if self.n else None

    @property
    def rate_b(self) -> float | None:
        return (self.both + self.only_b) / self.n if self.n else None

    @property
    def diff(self) -> float | None:
        """Success rate of A minus that of B."""
        return (self.only_a - self.only_b) / self.n if self.n else None

    @property
    def ci95(self) -> tuple[float, float] | None:
        """Newcombe's hybrid score interval (method 10) for the paired difference rate_a - rate_b."""
        n = self.n
        if n == 0:
            return None
        a, b, c, d = self.both, self.only_a, self.only_b, self.neither
        p1, p2 = (a + b) / n, (a + c) / n
        l1, u1 = wilson(a + b, n)
        l2, u2 = wilson(a + c, n)
        denom = (a + b) * (c + d) * (a + c) * (b + d)
        phi = (a * d - b * c) / math.sqrt(denom) if denom else 0.0
        delta = math.sqrt(max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0.0))
        eps = math.sqrt(max((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2, 0.0))
        diff = p1 - p2
        return max(-1.0, diff - delta), min(1.0, diff + eps)

    @property
    def p_value(self) -> float:
        return mcnemar_exact(self.only_a, self.only_b)


def paired(a: Outcomes, b: Outcomes) -> Paired:
    """Compare outcomes A and B on the (task, init state) pairs both have."""
    keys = set(a) & set(b)
    both = sum(1 for k in keys if a[k] and b[k])
    only_a = sum(1 for k in keys if a[k] and not b[k])
    only_b = sum(1 for k in keys if b[k] and not a[k])
    return Paired(both, only_a, only_b, len(keys) - both - only_a - only_b)


@dataclass
class Comparison:
    """One verdict line: ``a`` vs ``b`` (labels), in ``scope`` (e.g. the run and step), with its paired numbers."""

    scope: str
    a: str
    b: str
    stats: Paired
    note: str = ""
    p_adjusted: float | None = None

    def verdict(self, alpha: float = ALPHA) -> str:
        """The conclusion first (``A is better than B`` or ``A vs B: no significant difference``), then the
        numbers."""
        s = self.stats
        if s.n == 0:
            return f"{self.a} vs {self.b}: no common (task, init state) pairs"
        p = self.p_adjusted if self.p_adjusted is not None else s.p_value
        a, b = self.a, self.b
        if p < alpha and s.diff < 0:  # the numbers in the order of the conclusion: the better one first
            a, b, s = b, a, Paired(s.both, s.only_b, s.only_a, s.neither)
        lo, hi = s.ci95
        head = f"{a} is better than {b}" if p < alpha else f"{a} vs {b}: no significant difference"
        text = (
            f"{head}: {100 * s.rate_a:.1f}% vs {100 * s.rate_b:.1f}%, difference {100 * s.diff:+.1f} points "
            f"[95% CI {100 * lo:+.1f}, {100 * hi:+.1f}] on {s.n} paired episodes ({s.only_a} solved only by "
            f"{a}, {s.only_b} only by {b}); exact McNemar p = {_fmt_p(s.p_value)}"
        )
        if self.p_adjusted is not None:
            text += f" (Holm-adjusted {_fmt_p(self.p_adjusted)})"
        return text


def adjust(comparisons: list[Comparison]) -> list[Comparison]:
    """Set the Holm-adjusted p-value of each comparison (over the comparisons with pairs)."""
    live = [c for c in comparisons if c.stats.n]
    for c, p in zip(live, holm([c.stats.p_value for c in live])):
        c.p_adjusted = p
    return comparisons


def _fmt_p(p: float) -> str:
    return f"{p:.3g}" if p >= 1e-3 else f"{p:.1e}"


# ------------------------------------------------------------------------------------------------ honest selection
def is_selection(init_state: int) -> bool:
    """Init states that choose a "best" (even); the others (odd) report it."""
    return init_state % 2 == 0


def half(outcomes: Outcomes, selection: bool) -> dict[tuple[str, int], bool]:
    return {k: v for k, v in outcomes.items() if is_selection(k[1]) == selection}


@dataclass
class Selection:
    """The checkpoint chosen on the selection half. ``best`` None: no best (ties everywhere, or no selection or
    report episodes); ``reason`` says why. ``selection_rates``: step -> rate on the common selection pairs;
    ``report``: (successes, episodes) of the best step on the report half; ``last_report``: the same for the last
    step (the fair comparison)."""

    best: int | None
    reason: str
    selection_rates: dict[int, float]
    selection_pairs: int
    report: tuple[int, int] | None = None
    last_report: tuple[int, int] | None = None

    @property
    def report_rate(self) -> float | None:
        return self.report[0] / self.report[1] if self.report and self.report[1] else None


def _counts(outcomes: Outcomes) -> tuple[int, int]:
    return sum(1 for v in outcomes.values() if v), len(outcomes)


def select_best(by_step: Mapping[int, Outcomes]) -> Selection:
    """Choose the best step on the selection half (even init states) of the pairs every step evaluated; report it
    on the report half (odd init states) of that step. Ties among the top steps go to the later step; when every
    step ties there is no best."""
    if not by_step:
        return Selection(None, "no evaluated checkpoint", {}, 0)
    steps = sorted(by_step)
    last = steps[-1]
    common = set.intersection(*(set(half(by_step[s], True)) for s in steps))
    last_report = _counts(half(by_step[last], False))
    if not common:
        return Selection(
            None, "no selection episodes (even init states) common to all checkpoints", {}, 0, None, last_report
        )
    rates = {s: sum(1 for k in common if by_step[s][k]) / len(common) for s in steps}
    if len(steps) > 1 and len(set(rates.values())) == 1:
        return Selection(
            None,
            f"all {len(steps)} checkpoints tie at {100 * rates[last]:.0f}% on the selection half",
            rates,
            len(common),
            None,
            last_report,
        )
    top = max(rates.values())
    best = max(s for s in steps if rates[s] == top)
    report = _counts(half(by_step[best], False))
    if not report[1]:
        return Selection(
            None,
            "no report episodes (odd init states): evaluate 2 or more episodes per task",
            rates,
            len(common),
            None,
            last_report,
        )
    return Selection(
        best, "chosen on even init states, reported on odd init states", rates, len(common), report, last_report
    )


def best_horizon(by_horizon: Mapping[int, Outcomes]) -> int | None:
    """The horizon with the highest success on the selection half (ties: the smaller horizon); None without
    selection episodes or without a success among them."""
    rates = {}
    for h, o in by_horizon.items():
        sel = half(o, True)
        if sel:
            rates[h] = sum(sel.values()) / len(sel)
    if not rates:
        return None
    top = max(rates.values())
    if top == 0:  # nothing succeeded: no horizon is best, whatever the tie order
        return None
    return min(h for h, r in rates.items() if r == top)


def outcomes_from_records(
    records: Iterable[dict], tasks: Iterable[str] | None = None, episodes: int | None = None
) -> dict[tuple[str, int], bool]:
    """``(task, init_state) -> success`` of episode records (episodes.jsonl), without simulator errors, limited to
    ``tasks`` and init states below ``episodes`` when given; the first record of a pair counts."""
    wanted = set(tasks) if tasks is not None else None
    out: dict[tuple[str, int], bool] = {}
    for r in records:
        if r.get("error"):
            continue
        key = (str(r["task"]), int(r["init_state"]))
        if wanted is not None and key[0] not in wanted:
            continue
        if episodes is not None and key[1] >= episodes:
            continue
        out.setdefault(key, bool(r.get("success")))
    return out
