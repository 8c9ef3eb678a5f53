"""Constructed results for looking at the report at scale: two runs ("current", "improved"), the 90 LIBERO-90 tasks,
a checkpoint every 10k steps to 100k, H = 8, 16 and 64, 10 episodes per task (50 at the last checkpoint), a loss
logged every 50 steps. Outcomes are drawn at random from made-up success rates (NOT results of any model): the
page's layout, figures and statistics can be checked at paper scale without a cluster.

    python docs/examples/report_demo.py --out work/report_demo && python -m rdt report \
        --results work/report_demo/current work/report_demo/improved --out work/report_demo/report
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
from pathlib import Path

from rdt import layout
from rdt.evaluation.ledger import EPISODES_FILE, success_counts
from rdt.libero.suites import tasks
from rdt.training.run_folder import METRICS


def write(root: Path, name: str, quality: float, batch: int, warmup: int, seed: int) -> None:
    rng = random.Random(seed)
    names = [t.name for t in tasks("libero_90")]
    difficulty = {t: rng.random() for t in names}
    run = root / name
    steps = list(range(10000, 100001, 10000))
    for step in steps:
        episodes = 50 if step == steps[-1] else 10
        for h, factor in ((8, 1.0), (16, 0.95), (64, 0.35)):
            out = layout.eval_dir(run, step, h)
            out.mkdir(parents=True, exist_ok=True)
            progress = 1 - math.exp(-step / 30000)
            recs = []
            for t in names:
                p = max(0.0, min(1.0, quality * factor * progress * (1.2 - difficulty[t])))
                for i in range(episodes):
                    ok = rng.random() < p
                    recs.append(
                        {
                            "task": t,
                            "suite": "libero_90",
                            "init_state": i,
                            "horizon": h,
                            "step": step,
                            "success": ok,
                            "steps": rng.randint(80, 300) if ok else 400,
                            "seconds": round(rng.uniform(20, 60), 1),
                            "error": None,
                        }
                    )
            (out / EPISODES_FILE).write_text("".join(json.dumps(r) + "\n" for r in recs))
            far = 0 if quality > 0.5 else 24
            summary = {
                "step": step,
                "suite": "libero_90",
                "horizon": h,
                "overall": success_counts(recs),
                "tasks": {t: success_counts([r for r in recs if r["task"] == t]) for t in names},
                "settings": {"episodes": episodes, "tasks": names},
                "state_range": {
                    "states_checked": 32,
                    "states_far_outside": far,
                    "far_per_slot": {"right_gripper_open": far} if far else {},
                },
            }
            layout.summary_path(run, step, h).write_text(json.dumps(summary))
    layout.own_train_dir(run).mkdir(parents=True, exist_ok=True)
    with open(layout.own_train_dir(run) / METRICS, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "loss", "lr", "grad_norm", "sample_mse"])
        for s in range(50, 100001, 50):
            loss = (0.05 + 0.5 * math.exp(-s / (15000 * (2 - quality)))) * math.exp(rng.gauss(0, 0.35))
            w.writerow([s, loss, 1e-4 * min(1.0, s / warmup), 1.0, loss * 2 if s % 500 == 0 else ""])
    train = {
        "model": "rdt-1b",
        "init_from": "robotics-diffusion-transformer/rdt-1b",
        "text_encoder": "google/t5-v1_1-xxl",
        "vision_encoder": "google/siglip-so400m-patch14-384",
        "per_device_batch_size": 4,
        "effective_batch_size": batch,
        "lr_warmup_steps": warmup,
        "mixed_precision": "bf16",
        "checkpointing_period": 2000,
        "checkpoints_total_limit": 30,
    }
    layout.settings_file(run).write_text(
        json.dumps(
            {
                "format": "rdt-settings/1",
                "kind": "run",
                "gpus": 8,
                "exec_horizons": [8, 16, 64],
                "max_steps": 100000,
                "train": train,
            }
        )
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    root = Path(a.out)
    write(root, "current", 0.45, 32, 100, 1)
    write(root, "improved", 0.8, 256, 5000, 2)


if __name__ == "__main__":
    main()
