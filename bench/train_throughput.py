"""End-to-end CPU training throughput of the tiny recipe: data loader + frozen vision encoder + model step.

Every row runs the real trainer (rdt.training.trainer.Trainer: its DataLoader over the training HDF5, its vision
encoder or precomputed features, forward/backward, clipping, AdamW, EMA) on the same data and splits each
optimizer step into
  data    - waiting for the next batch from the DataLoader (reading, decoding, augmentation, preprocessing),
  encoder - the frozen vision encoder's image tokens (or the lookup of precomputed ones),
  model   - forward + backward + clip + AdamW + LR schedule + EMA.
Rows (same run, so the shared machine's load affects all alike):
  recipe              image_aug on, 1 loader worker, encoder every step (the learning check as first run)
  no aug              image_aug off, 1 loader worker, encoder every step
  cached features     image_aug off, cache_image_features on (features once per frame), loader in-process

    python bench/train_throughput.py [--data D --lang L --stats S] [--batch 32] [--steps 12]
Without --data it writes synthetic demos of two tasks (128 px frames, the official LIBERO layout) and converts them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

ROWS = {
    "recipe": dict(image_aug=True, dataloader_num_workers=1, cache_image_features=False),
    "no aug": dict(image_aug=False, dataloader_num_workers=1, cache_image_features=False),
    "cached features": dict(image_aug=False, dataloader_num_workers=0, cache_image_features=True),
}


def make_data(root: Path) -> dict[str, str]:
    """Synthetic 128 px demos of two tasks -> converted training file, statistics, tiny language table."""
    from official_layout import write_demo_file
    from rdt.data.stats import compute_stats
    from rdt.encoders import load_text_encoder
    from rdt.lang import encode_instructions, instructions_from_training_file
    from rdt.libero.convert import convert
    from rdt.utils.atomic import write_json

    demos = root / "demos"
    demos.mkdir(parents=True)
    tasks = {"KITCHEN_SCENE7_open_the_microwave": [160, 150], "KITCHEN_SCENE7_put_the_white_bowl_on_the_plate": [170]}
    for k, (task, steps) in enumerate(tasks.items()):
        write_demo_file(demos / f"{task}_demo.hdf5", task, None, steps, seed=k, image_size=128)
    data = root / "data.h5"
    convert([str(demos)], data)
    write_json(root / "stats.json", compute_stats(data))
    encode_instructions([""] + instructions_from_training_file(data), load_text_encoder("tiny"), root / "lang.h5")
    return {"data": str(data), "lang": str(root / "lang.h5"), "stats": str(root / "stats.json")}


def one(row: str, paths: dict[str, str], batch: int, steps: int, out: Path) -> dict:
    import torch

    from rdt import train_config
    from rdt.training.trainer import Trainer

    cfg = train_config.from_dict(
        dict(
            model="tiny",
            init_from=None,
            text_encoder="tiny",
            vision_encoder="tiny",
            **paths,
            heldout_episodes=0,
            effective_batch_size=batch,
            per_device_batch_size=batch,
            learning_rate=5e-4,
            lr_warmup_steps=50,
            sample_period=0,
            checkpointing_period=10_000,
            **ROWS[row],
        )
    )
    t_setup = time.perf_counter()
    trainer = Trainer(cfg, out)
    setup_s = time.perf_counter() - t_setup
    data = trainer.data_iterator()
    parts, cpu_start = [], None
    for i in range(steps + 2):  # the first two steps warm up (workers, allocator)
        if i == 2:
            cpu_start = cpu_seconds()
        t0 = time.perf_counter()
        batch_ = next(data)
        t1 = time.perf_counter()
        inputs = trainer.model_inputs(batch_, trainer.train_features)
        t2 = time.perf_counter()
        trainer.model.train()
        loss = trainer.model(**inputs)
        trainer.backend.backward(loss, trainer.accumulation)
        trainer.optimizer_step()
        t3 = time.perf_counter()
        if i >= 2:
            parts.append((t1 - t0, t2 - t1, t3 - t2))
    cpu_per_step = (cpu_seconds() - cpu_start) / steps
    med = [sorted(p[k] for p in parts)[len(parts) // 2] for k in range(3)]
    total = sorted(sum(p) for p in parts)[len(parts) // 2]
    return {
        "row": row,
        "data_s": med[0],
        "encoder_s": med[1],
        "model_s": med[2],
        "step_s": total,
        "samples_per_s": batch / total,
        "setup_s": setup_s,
        "threads": torch.get_num_threads(),
        "cpu_s": cpu_per_step,
    }


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and its live children (the DataLoader workers) so far."""
    import psutil

    me = psutil.Process()
    procs = [me] + me.children(recursive=True)
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data"), p.add_argument("--lang"), p.add_argument("--stats")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--paths", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        with tempfile.TemporaryDirectory() as out:
            print(json.dumps(one(args.one, json.loads(args.paths), args.batch, args.steps, Path(out))))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        paths = {"data": args.data, "lang": args.lang, "stats": args.stats} if args.data else make_data(Path(tmp))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        rows = []
        for row in ROWS:
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--one",
                    row,
                    "--paths",
                    json.dumps(paths),
                    "--batch",
                    str(args.batch),
                    "--steps",
                    str(args.steps),
                ],
                capture_output=True,
                text=True,
                env=env,
            )
            if proc.returncode != 0:
                print(f"{row}: failed\n{proc.stderr[-3000:]}", file=sys.stderr)
                return 1
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    base = rows[0]["step_s"]
    print(
        f"tiny training step at batch {args.batch} on CPU (torch threads {rows[0]['threads']}), median of "
        f"{args.steps} steps; data = waiting for the DataLoader, encoder = image tokens, model = fwd+bwd+AdamW+EMA"
    )
    base_cpu = rows[0]["cpu_s"]
    print(
        "cpu s = CPU seconds per step of the training process and its loader workers (what a 2-core machine pays;"
        " wall times hide a worker's work while it overlaps the model)"
    )
    print(
        f"{'row':<16} {'data s':>7} {'encoder s':>9} {'model s':>8} {'step s':>7} {'samples/s':>9} "
        f"{'data %':>6} {'speed-up':>8} {'cpu s':>6} {'cpu speed-up':>12} {'set-up s':>8}"
    )
    for r in rows:
        print(
            f"{r['row']:<16} {r['data_s']:>7.3f} {r['encoder_s']:>9.3f} {r['model_s']:>8.3f} {r['step_s']:>7.3f} "
            f"{r['samples_per_s']:>9.1f} {100 * (r['data_s'] + r['encoder_s']) / r['step_s']:>5.0f}% "
            f"{base / r['step_s']:>7.2f}x {r['cpu_s']:>6.3f} {base_cpu / r['cpu_s']:>11.2f}x {r['setup_s']:>8.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
