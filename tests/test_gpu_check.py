"""Issue 21: the GPU check (bench/gpu_check.py) is ready to run on a GPU machine; here it runs on the CPU with the
tiny preset and prints its one table with a measured number in every row (the DDP and ZeRO-2 training steps through
the trainer's backend, and inference with and without the cached cross-attention keys). The simulator rows run in
bench/evaluate.py's own use (slow; see docs/evaluation_speed.md)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_runs_on_cpu_with_the_tiny_preset():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu_check.py"), "--skip", "sim", "--steps", "2", "--repeats", "1"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    rows = {m.group(1).strip(): m.group(3) for m in re.finditer(r"^\| (.+?) \| (.+?) \| (.+?) \|", proc.stdout, re.M)}
    assert re.match(r"[\d.]+ samples/s", rows["train DDP"]), rows
    assert re.match(r"[\d.]+ samples/s", rows["train ZeRO-2"]), rows
    assert re.match(r"[\d.]+ ms / chunk", rows["infer reuse K/V"]), rows
    assert re.match(r"[\d.]+ ms / chunk", rows["infer no reuse (original)"]), rows
    assert "GPU check on CPU" in proc.stdout
