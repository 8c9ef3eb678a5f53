"""Training step time on a busy CPU: the tiny preset's trainer step (bench/train_step.py's step: forward, backward,
clipping, AdamW, schedule, EMA) alone and beside one competing busy process, with 1 and 2 torch threads and with
OpenMP's passive wait policy. Each row runs in a fresh process; the slowdown column compares it with the same
thread count alone, in the same run (these machines are shared: only ratios within one run mean anything).

    python bench/busy_cpu.py [--batch 32] [--steps 10]

Why: on a shared 2-core machine a 2-thread trainer ran 15-40x slower beside other busy processes (issue 21); a
thread that waits for its descheduled sibling at every parallel region spins instead of yielding the core.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUSY = "import time\nt = time.time()\nwhile time.time() - t < 600:\n    pass\n"


def measure(threads: int, wait: str | None, busy: bool, batch: int, steps: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env.pop("OMP_WAIT_POLICY", None)
    if wait:
        env["OMP_WAIT_POLICY"] = wait
    competitor = subprocess.Popen([sys.executable, "-c", BUSY]) if busy else None
    try:
        proc = subprocess.run(
            [sys.executable, str(REPO / "bench" / "train_step.py"), "--one", "tiny", str(batch), "cpu", str(steps)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=10)
    args = p.parse_args()
    rows = []
    for threads, wait in ((2, None), (1, None), (2, "PASSIVE")):
        alone = measure(threads, wait, False, args.batch, args.steps)
        busy = measure(threads, wait, True, args.batch, args.steps)
        rows.append((threads, wait or "default", alone["step_s"], busy["step_s"]))
    print(f"tiny training step at batch {args.batch} on CPU, median of {args.steps} steps, {os.cpu_count()} CPUs")
    print(f"{'threads':>7} {'OMP wait':>8} {'alone s':>8} {'busy s':>8} {'slowdown':>9} {'vs 2 alone':>11}")
    base = rows[0][2]
    for threads, wait, alone, busy in rows:
        print(f"{threads:>7} {wait:>8} {alone:>8.3f} {busy:>8.3f} {busy / alone:>8.1f}x {busy / base:>10.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
