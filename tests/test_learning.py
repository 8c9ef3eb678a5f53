"""The learning check (config/learning_check.yaml): the whole chain - scripted demo, conversion, statistics,
language, training from scratch, evaluation in the real simulator - learns one demo well enough to succeed on its
init state: at least 2 of 4 rollouts (evaluation seeds) at H = 8 and 3 of the 8 at H = 8 and 16. The assertion can
fail: an untrained or broken chain scores 0 (every earlier version of this pipeline did). Runs the workflow with the
committed config, only the results folder changed."""

from __future__ import annotations

import csv
import json

import pytest
import yaml

from rdt.bundle import learning_check_passes
from workflow_helpers import copy_repo, current_summary, snakemake

pytestmark = [pytest.mark.sim, pytest.mark.slow]


def test_one_demo_is_learned_and_succeeds_in_the_simulator(tmp_path):
    work = copy_repo(tmp_path / "repo")
    cfg = yaml.safe_load((work / "config" / "learning_check.yaml").read_text())
    snakemake(work, "--configfile", "config/learning_check.yaml", timeout=1500)

    results = work / cfg["results"]
    last = cfg["train"]["max_steps"]
    summaries = {
        (run, h): json.loads(current_summary(results / run, last, h).read_text())
        for run in cfg["runs"]
        for h in cfg["eval"]["exec_horizons"]
    }
    successes = {key: s["overall"]["successes"] for key, s in summaries.items()}
    # four rollouts per horizon (evaluation seeds 0-3, one training); measured with this config: H=8 3/4, H=16 1/4
    at = {h: sum(n for (_, hh), n in successes.items() if hh == h) for h in (8, 16)}
    assert learning_check_passes(at[8], at[16]), successes

    # the sample error (action slots) keeps falling: from step 250 to the end by more than 4x (measured: 5.2x)
    metrics = sorted((results / "train").glob("*/metrics.csv")) or sorted(results.glob("**/metrics.csv"))
    with open(metrics[0], newline="") as f:
        mse = [float(r["sample_mse"]) for r in csv.DictReader(f) if r["sample_mse"]]
    assert len(mse) >= 3 and mse[-1] < mse[0] / 4, mse
