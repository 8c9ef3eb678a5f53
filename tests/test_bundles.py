"""Results bundles (rdt/bundle.py): a bundle made from a results tree holds the evidence and no checkpoint or video,
the tables are generated from it, and every table README and docs quote equals what the committed bundles give."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rdt.bundle import BUNDLE_FILE, make_bundle, render, tables
from rdt.errors import UserError
from test_report import write_replay, write_run

REPO = Path(__file__).resolve().parents[1]


def test_committed_tables_equal_what_the_bundles_give():
    done = subprocess.run(
        [sys.executable, "scripts/results_tables.py", "--check"], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_committed_block_names_a_committed_bundle():
    blocks = 0
    for doc in [REPO / "README.md", *(REPO / "docs").rglob("*.md")]:
        for name in __import__("re").findall(r"<!-- results:([\w.-]+)", doc.read_text()):
            blocks += 1
            assert (REPO / "docs" / "results" / name).is_dir(), f"{doc}: no bundle docs/results/{name}"
    assert blocks >= 2


def test_a_bundle_keeps_the_evidence_and_regenerates_the_tables(tmp_path):
    results = tmp_path / "results"
    write_run(results, "current", 8, 32)
    write_replay(results, "replay", (4, 4))
    (results / "current" / "eval" / "step-6" / "h8" / "model.safetensors").write_text("weights")
    out = make_bundle(results, ["current", "replay"], tmp_path / "bundle", {"command": "snakemake x", "seconds": 61})
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert "current/eval/step-6/h8/episodes.jsonl" in files and "replay/eval/step-0/h0/summary.json" in files
    assert not any(f.endswith((".mp4", ".safetensors")) for f in files)
    meta = json.loads((out / BUNDLE_FILE).read_text())
    assert meta["targets"] == ["current", "replay"] and meta["command"] == "snakemake x"
    parts = tables(out)
    assert "| current | 4/8 = 50% [22, 78] | 1/8 = 12% [2, 47] | - |" in parts["table"]
    assert "| replay | - | - | 8/8 = 100% [68, 100] |" in parts["table"]
    assert "(does not beat replay)" in parts["comparisons"] and "0 h 01 min 01 s" in parts["cost"]
    doc = "intro\n<!-- results:bundle -->\nstale\n<!-- /results -->\n<!-- results:bundle:cost -->\n<!-- /results -->\n"
    filled = render(doc, tmp_path)
    assert "stale" not in filled and "| current |" in filled and "Command: `snakemake x`" in filled
    assert render(filled, tmp_path) == filled  # rendering is stable
    with pytest.raises(UserError, match="no such part"):
        render("<!-- results:bundle:nope -->\n<!-- /results -->", tmp_path)


def test_a_bundle_of_unfinished_targets_is_refused(tmp_path):
    with pytest.raises(UserError, match="no settings.json"):
        make_bundle(tmp_path, ["missing"], tmp_path / "b", {})


def test_seeds_table_groups_rollouts_by_training_seed_and_applies_the_checks_criterion():
    from types import SimpleNamespace

    from rdt.bundle import learning_check_passes, seeds_table

    def run(train_seed, wins):  # one evaluation seed's rollouts: {horizon: success}
        results = {h: SimpleNamespace(records=[{"success": w}]) for h, w in wins.items()}
        return SimpleNamespace(
            settings={"train": {"seed": train_seed}},
            results=list(results.values()),
            horizons=sorted(wins),
            last_step=1500,
            result=lambda step, h, results=results: results.get(h),
        )

    runs = [run(0, {8: w8, 16: w16}) for w8, w16 in ((1, 0), (1, 1), (0, 0), (0, 0))]  # 2/4 and 1/4: passes
    runs += [run(1, {8: w8, 16: 0}) for w8 in (1, 1, 0, 0)]  # 2/4 and 0/4: 2 of 8, fails
    table = seeds_table(runs)
    assert "| 0 | 2/4 | 1/4 | passes |" in table and "| 1 | 2/4 | 0/4 | fails |" in table
    assert table.endswith("The check passes for 1 of 2 training seeds.")
    assert learning_check_passes(2, 1) and not learning_check_passes(2, 0) and not learning_check_passes(1, 2)
    cut = seeds_table(runs[:4] + runs[4:6])  # training seed 1 with 2 of its 4 evaluation seeds: not yet decided
    assert "| 1 | 2/2 | 0/2 | incomplete (2 of 4 evaluation seeds) |" in cut
    assert cut.endswith("The check passes for 1 of 1 training seeds (1 more incomplete).")
