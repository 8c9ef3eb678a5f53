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
