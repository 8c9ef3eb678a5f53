"""Faults without loss (issue 11): no deleted history, no corrupt file under a final name, one clear line (exit 2)
for a full or read-only disk, diverged or broken weights refused, and the smaller parse-time checks.

Full and read-only folders are real: small tmpfs mounts (root, as in CI); where mounting is impossible the test
injects the OSError instead."""
from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import train_helpers as h
from rdt import train
from rdt.errors import UserError


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield h.make_data(tmp_path_factory.mktemp("faults_data"))
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------------ mounts
def _mount(folder: Path, options: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


@contextlib.contextmanager
def mounted(folder: Path, options: str):
    """A tmpfs at ``folder`` (``size=...``, ``ro``); skips the test when mounting is not possible."""
    if not _mount(folder, options):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.fixture
def full_dir(tmp_path):
    """A 1 MiB tmpfs, filled up to the last few KiB."""
    with mounted(tmp_path / "full", "size=1m") as folder:
        with open(folder / "filler", "wb") as f:
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * 4096)
                    f.flush()
        yield folder


@pytest.fixture
def readonly_dir(tmp_path):
    with mounted(tmp_path / "ro", "ro,size=1m") as folder:
        yield folder


def rdt_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rdt", *map(str, args)], cwd=h.REPO, env=h.env(),
                          capture_output=True, text=True, timeout=timeout)


def one_line_error(proc: subprocess.CompletedProcess, *words: str) -> str:
    """The command failed with exit 2 and a single ``error:`` line (no traceback) containing ``words``."""
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr[-3000:]
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


# ================================================================================================ 1. pruning
def test_segment_ending_below_existing_checkpoints_keeps_them_and_the_metrics(data, tmp_path):
    """Defect 1: limit 1, train to 6, then a segment to 2. Before: checkpoint-2 was pruned right after being
    written (checkpoint-6 kept as 'the newest'), the export failed with a misleading error, and metrics.csv was cut
    from 6 rows to 2. Now: checkpoint-2 is kept and exported, checkpoint-6 too, and metrics.csv keeps 6 rows."""
    out = tmp_path / "run"
    cfg = h.load_run(data, checkpointing_period=2, checkpoints_total_limit=1)
    train.train_segment(cfg, 6, out)
    assert [s for s, _ in train.list_checkpoints(out)] == [6]
    before = train.read_metrics(out)
    assert [int(r["step"]) for r in before] == list(range(1, 7))

    train.train_segment(cfg, 2, out)
    assert [s for s, _ in train.list_checkpoints(out)] == [2, 6]
    assert train.export_dir(out, 2).is_dir() and train.export_dir(out, 6).is_dir()
    after = train.read_metrics(out)
    assert [int(r["step"]) for r in after] == list(range(1, 7))
    assert [r["loss"] for r in after] == pytest.approx([r["loss"] for r in before], rel=1e-4)
    # the rows the segment (restarting at step 0) set aside were saved before they were removed from metrics.csv
    history = (out / train.METRICS_HISTORY).read_text().splitlines()
    assert history[0].startswith("step,") and [ln.split(",")[0] for ln in history[1:]] == ["1", "2", "3", "4", "5",
                                                                                          "6"]

    # a later segment past the newer checkpoint prunes normally again (limit 1: only the newest stays)
    train.train_segment(cfg, 8, out)
    assert [s for s, _ in train.list_checkpoints(out)] == [8]
    assert [int(r["step"]) for r in train.read_metrics(out)] == list(range(1, 9))


def test_prune_never_deletes_the_checkpoint_just_written(tmp_path):
    for step in (2, 4, 10, 12):
        folder = train.checkpoint_dir(tmp_path, step)
        folder.mkdir(parents=True)
        (folder / train.STATE_FILE).write_text('{"fingerprint": "f", "step": %d}' % step)
    gone = train.prune_checkpoints(tmp_path, "f", limit=1, written=4)
    assert [p.name for p in gone] == ["checkpoint-2"]
    assert [s for s, _ in train.list_checkpoints(tmp_path)] == [4, 10, 12]
    gone = train.prune_checkpoints(tmp_path, "f", limit=2, written=12)
    assert [s for s, _ in train.list_checkpoints(tmp_path)] == [10, 12]
