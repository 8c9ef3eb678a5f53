"""Training step time and peak memory of the RDT presets, as the trainer runs a step.

One optimizer step = forward (``compute_loss``, bf16 autocast on GPU / fp32 on CPU) + backward of one
micro-batch, gradient-norm clipping, AdamW step with fp32 master weights, LR schedule and the fp32 EMA update (the
trainer's own AdamW, schedule and EMA: rdt.training.optim). Inputs have the preset's full shapes (language 32
tokens, 6 x 729 = 4374 image tokens for rdt-170m / rdt-1b) with random values; the frozen SigLIP forward and data
loading are not included (SigLIP-so400m is not downloaded here).
Each configuration runs in a fresh process, so the peak memory is its own: CPU = peak resident set size of the
process (weights, gradients, AdamW state, EMA copy and activations), GPU = torch.cuda.max_memory_allocated.

    python bench/train_step.py            # CPU: tiny (batch 4) and rdt-170m (batch 1); GPU: + rdt-170m / rdt-1b at 4
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LANG_TOKENS = 32


def random_inputs(c, batch: int, device, seed: int | None = None) -> dict:
    """``compute_loss`` inputs of model config ``c``'s full shapes (LANG_TOKENS language tokens, every image token),
    random values (from ``seed`` when given), on ``device``; shared with bench/gpu_check.py."""
    import torch

    g = torch.Generator().manual_seed(seed) if seed is not None else None
    inputs = {
        "lang_tokens": torch.randn(batch, LANG_TOKENS, c.lang_token_dim, generator=g),
        "lang_mask": torch.ones(batch, LANG_TOKENS, dtype=torch.bool),
        "img_tokens": torch.randn(batch, c.img_cond_len, c.img_token_dim, generator=g),
        "state_tokens": torch.randn(batch, 1, c.state_token_dim, generator=g),
        "action_gt": torch.randn(batch, c.pred_horizon, c.action_dim, generator=g),
        "action_mask": torch.ones(batch, 1, c.action_dim),
        "ctrl_freqs": torch.full((batch,), 20),
    }
    return {k: v.to(device) for k, v in inputs.items()}


def one(preset: str, batch: int, device: str, steps: int) -> dict:
    import torch

    from rdt import train_config
    from rdt.model.runner import build_runner
    from rdt.training import optim

    torch.manual_seed(0)
    recipe = train_config.TrainConfig()
    runner = build_runner(preset, seed=0, device=device).train()
    c = runner.config
    ema = optim.ema(runner, recipe)
    opt = optim.adamw(runner.parameters(), recipe)
    schedule = optim.lr_schedule(opt, recipe)
    inputs = random_inputs(c, batch, device)
    amp = (
        torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        if device == "cuda"
        else torch.autocast(device_type="cpu", enabled=False)
    )

    def step() -> None:
        with amp:
            loss = runner.compute_loss(**inputs)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(runner.parameters(), recipe.max_grad_norm)
        opt.step()
        schedule.step()
        opt.zero_grad(set_to_none=True)
        ema.step(runner)

    step()  # warm-up (allocates AdamW state)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times, cpu_times = [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    step_s = sorted(times)[len(times) // 2]
    peak = (
        torch.cuda.max_memory_allocated()
        if device == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    return {
        "preset": preset,
        "device": device,
        "precision": "bf16 autocast" if device == "cuda" else "fp32",
        "batch": batch,
        "params_M": runner.num_parameters() / 1e6,
        "step_s": step_s,
        "cpu_s": sorted(cpu_times)[len(cpu_times) // 2],
        "samples_per_s": batch / step_s,
        "peak_GiB": peak / 2**30,
        "gpu": torch.cuda.get_device_name() if device == "cuda" else "",
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--one", nargs=4, metavar=("PRESET", "BATCH", "DEVICE", "STEPS"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        preset, batch, device, steps = args.one
        print(json.dumps(one(preset, int(batch), device, int(steps))))
        return 0

    import torch

    plan = [("tiny", 4, "cpu", 5), ("rdt-170m", 1, "cpu", 1)]
    if torch.cuda.is_available():
        plan += [("rdt-170m", 4, "cuda", 10), ("rdt-1b", 4, "cuda", 10)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    rows = []
    for preset, batch, device, steps in plan:
        proc = subprocess.run(
            [sys.executable, __file__, "--one", preset, str(batch), device, str(steps)],
            capture_output=True,
            text=True,
            env=env,
        )
        if proc.returncode != 0:
            print(f"{preset} on {device}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            return 1
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(
        f"training step (forward + backward + clip + AdamW + LR schedule + EMA), torch threads="
        f"{torch.get_num_threads()}; step s = wall-clock median, cpu s = process CPU time (all threads) of that step"
    )
    print(
        f"{'preset':<10} {'device':<6} {'precision':<13} {'batch':>5} {'params':>8} {'step s':>8} "
        f"{'cpu s':>8} {'samples/s':>10} {'peak GiB':>9}  note"
    )
    for r in rows:
        note = r["gpu"] or "peak = process RSS"
        print(
            f"{r['preset']:<10} {r['device']:<6} {r['precision']:<13} {r['batch']:>5} {r['params_M']:>7.0f}M "
            f"{r['step_s']:>8.3f} {r['cpu_s']:>8.3f} {r['samples_per_s']:>10.2f} {r['peak_GiB']:>9.2f}  {note}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
