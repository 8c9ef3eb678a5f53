"""Paired comparisons and honest selection (rdt/report_stats.py) on constructed outcomes with known answers."""

import math

import numpy as np
import pytest

from rdt.report_stats import (
    Comparison,
    Paired,
    adjust,
    best_horizon,
    holm,
    mcnemar_exact,
    outcomes_from_records,
    paired,
    select_best,
    wilson,
)

Z = 1.959963984540054


def outcomes(successes, task="t", n=None):
    """(task, init) -> success for init states 0..n-1, successful at the init states in ``successes``."""
    n = n if n is not None else max(successes, default=-1) + 1
    return {(task, i): i in set(successes) for i in range(n)}


def test_exact_mcnemar_known_values():
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32)  # 2 x 0.5^5
    assert mcnemar_exact(1, 9) == pytest.approx(2 * 11 / 1024)  # 2 x (1 + 10) / 2^10
    assert mcnemar_exact(9, 1) == mcnemar_exact(1, 9)
    assert mcnemar_exact(3, 3) == 1.0 and mcnemar_exact(0, 0) == 1.0
    from scipy import stats as scipy_stats  # a test dependency

    for b, c in ((2, 11), (7, 20), (15, 15), (0, 30)):
        assert mcnemar_exact(b, c) == pytest.approx(scipy_stats.binomtest(min(b, c), b + c, 0.5).pvalue)


def test_paired_counts_and_difference():
    # 20 pairs: A solves 0..11, B solves 6..15 -> both 6..11 (6), only A 0..5 (6), only B 12..15 (4), neither 4
    a, b = outcomes(range(12), n=20), outcomes(range(6, 16), n=20)
    s = paired(a, b)
    assert (s.both, s.only_a, s.only_b, s.neither, s.n) == (6, 6, 4, 4, 20)
    assert s.rate_a == 0.6 and s.rate_b == 0.5 and s.diff == pytest.approx(0.1)
    assert s.p_value == pytest.approx(mcnemar_exact(6, 4))
    lo, hi = s.ci95
    assert lo < 0.1 < hi and -1 <= lo and hi <= 1
    # only pairs both evaluated count
    s2 = paired(a, {k: v for k, v in b.items() if k[1] < 10})
    assert s2.n == 10


def test_newcombe_interval_for_all_failures_is_the_wilson_upper_bound_both_ways():
    s = Paired(0, 0, 0, 50)
    u = Z * Z / (50 + Z * Z)  # Wilson upper bound of 0/50
    lo, hi = s.ci95
    assert lo == pytest.approx(-u) and hi == pytest.approx(u)
    assert wilson(0, 50)[1] == pytest.approx(u)


def test_newcombe_interval_covers_the_true_difference_about_95_percent():
    rng = np.random.default_rng(0)
    # correlated pairs: P(both)=0.35, P(only A)=0.25, P(only B)=0.05, P(neither)=0.35 -> true diff 0.20
    probs, true, n, sims = [0.35, 0.25, 0.05, 0.35], 0.20, 50, 2000
    tables = rng.multinomial(n, probs, size=sims)
    covered = 0
    for t in tables:
        lo, hi = Paired(*map(int, t)).ci95
        covered += lo <= true <= hi
    assert 0.93 <= covered / sims <= 0.98


def test_holm_adjustment():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5]


def test_verdict_lines_say_which_is_better_only_when_significant():
    strong = Comparison("run x, step 6", "H=8", "H=64", paired(outcomes(range(30), n=40), outcomes([0, 1], n=40)))
    weak = Comparison("run x, step 6", "H=8", "H=16", paired(outcomes([0, 1, 2], n=40), outcomes([0, 1], n=40)))
    adjust([strong, weak])
    assert strong.verdict().startswith("H=8 is better than H=64: 75.0% vs 5.0%, difference +70.0 points")
    assert "28 solved only by H=8, 0 only by H=64" in strong.verdict()
    assert weak.verdict().startswith("H=8 vs H=16: no significant difference: 7.5% vs 5.0%")
    assert weak.p_adjusted == pytest.approx(1.0)
    worse_first = Comparison("s", "H=64", "H=8", strong.stats.__class__(0, 0, 28, 12), p_adjusted=1e-6)
    assert worse_first.verdict().startswith("H=8 is better than H=64: 70.0% vs 0.0%, difference +70.0 points")
    assert "28 solved only by H=8, 0 only by H=64" in worse_first.verdict()
    empty = Comparison("s", "A", "B", paired({}, {}))
    assert "no common" in empty.verdict()


def test_best_is_chosen_on_even_init_states_and_reported_on_odd():
    # step 2: good on even init states only (looks best if selected on all episodes, but it is luck on even ones)
    # step 4: 3 of 5 even, 4 of 5 odd; step 6 (last): 2 of 5 even, 3 of 5 odd
    by_step = {
        2: outcomes([0, 2, 4, 6, 8], n=10),
        4: outcomes([0, 2, 4, 1, 3, 5, 7], n=10),
        6: outcomes([0, 2, 1, 3, 5], n=10),
    }
    sel = select_best(by_step)
    assert sel.best == 2 and sel.selection_rates == {2: 1.0, 4: 0.6, 6: 0.4}
    assert sel.report == (0, 5) and sel.report_rate == 0.0  # its honest number: 0 of the 5 odd init states
    assert sel.last_report == (3, 5)
    assert sel.selection_pairs == 5


def test_no_best_when_all_checkpoints_tie():
    by_step = {s: outcomes([], n=10) for s in (2, 4, 6)}  # all 0 %
    sel = select_best(by_step)
    assert sel.best is None and "tie" in sel.reason
    one_episode = {2: outcomes([0], n=1), 4: outcomes([], n=1)}  # only init state 0: nothing to report on
    sel = select_best(one_episode)
    assert sel.best is None and "report episodes" in sel.reason


def test_ties_at_the_top_go_to_the_later_step_and_selection_uses_common_pairs():
    # step 2 evaluated 10 episodes, steps 4 and 6 only 4 (a budget): selection on init states 0 and 2
    by_step = {2: outcomes([0, 2, 4, 6], n=10), 4: outcomes([0], n=4), 6: outcomes([0, 2], n=4)}
    sel = select_best(by_step)
    assert sel.selection_pairs == 2 and sel.selection_rates == {2: 1.0, 4: 0.5, 6: 1.0}
    assert sel.best == 6 and sel.report == (0, 2)


def test_best_horizon_on_the_selection_half():
    assert best_horizon({8: outcomes([0, 2], n=4), 16: outcomes([0, 1, 3], n=4), 64: outcomes([0, 2], n=4)}) == 8
    assert best_horizon({8: {}}) is None


def test_outcomes_from_records_drop_errors_other_tasks_and_extra_episodes():
    recs = [
        {"task": "a", "init_state": 0, "success": True, "error": None},
        {"task": "a", "init_state": 1, "success": True, "error": "sim crashed"},
        {"task": "a", "init_state": 2, "success": False},
        {"task": "a", "init_state": 0, "success": False},  # a later duplicate does not count
        {"task": "b", "init_state": 0, "success": True},
    ]
    assert outcomes_from_records(recs, tasks=["a"], episodes=3) == {("a", 0): True, ("a", 2): False}
    assert math.isclose(len(outcomes_from_records(recs)), 3)
