"""The GPU check (issue 21): what a cluster user needs to know before the first GPU day, measured in one run and
printed as one table.

    python bench/gpu_check.py                    # on a GPU: rdt-1b, bf16 (under 10 minutes on one H100/H200)
    python bench/gpu_check.py --preset tiny      # anywhere (CPU: fp32), the same rows on the tiny preset

Rows, each in a fresh process so that its peak memory is its own:

  train  DDP     the trainer's step (rdt.training.backend, as `rdt train` builds it: accelerate, the LossModel
                 forward, backward, clipping, AdamW, LR schedule, EMA) at per-device batch 4 with inputs of the
                 preset's full shapes (32 language tokens, 6 x 729 image tokens for the released presets; the frozen
                 SigLIP forward and data loading are not included): samples/s and peak memory
  train  ZeRO-2  the same step under DeepSpeed ZeRO stage 2 (`train.deepspeed: zero2`; one process here, so it
                 shows the engine's overhead and memory layout, not the partitioning across 8 GPUs)
  infer  reuse / no reuse   one 64-step action chunk (5 DPM-Solver++ steps, batch 1) with the cross-attention keys
                 and values of the conditions computed once per chunk, and recomputed at every step as the original
                 code does (bench/inference.py): ms per chunk
  sim    1 / N   episodes per hour in the real LIBERO simulator with 1 and with N simulator processes sharing one
                 policy on the device (tiny policy, short episodes: the simulator's share; bench/evaluate.py)

The device is cuda when available; every row's numbers come from this run only (machines differ; compare rows).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from train_step import random_inputs  # noqa: E402  (the same inputs as bench/train_step.py)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_row(preset: str, batch: int, zero: str, steps: int, out: Path) -> dict:
    """The trainer's step on random inputs of the preset's shapes (this process; ZeRO-2 needs the launcher's
    environment, which the parent sets)."""
    import torch

    from rdt import train_config
    from rdt.model.runner import build_runner
    from rdt.training import optim
    from rdt.training.backend import make_backend
    from rdt.training.trainer import LossModel

    cuda = torch.cuda.is_available()
    cfg = train_config.from_dict(
        {
            "data": "unused.h5",
            "lang": "unused.safetensors",
            "stats": "unused.json",
            "model": preset,
            "init_from": None,
            "per_device_batch_size": batch,
            "effective_batch_size": batch,
            "deepspeed": zero,
        }
    )
    backend = make_backend(cfg, out)
    accelerator, device = backend.accelerator, backend.accelerator.device
    runner = build_runner(preset, seed=0).train()
    c = runner.config
    optimizer = optim.adamw(runner.parameters(), cfg)
    scheduler = optim.lr_schedule(optimizer, cfg)
    ema = optim.ema(runner, cfg)
    model, optimizer = accelerator.prepare(LossModel(runner), optimizer)
    ema.model.to(device)
    inputs = random_inputs(c, batch, device, seed=0)

    def step() -> None:
        with backend.sync(model, last=True):
            with accelerator.autocast():
                loss = model(**inputs)
            backend.backward(loss, 1)
        accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        ema.step(runner)

    step()  # warm-up: allocates the optimizer state
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    step_s = sorted(times)[len(times) // 2]
    peak = torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "row": f"train {'ZeRO-2' if zero == 'zero2' else 'DDP'}",
        "what": f"{preset}, per-device batch {batch}, {'fp32' if backend.precision == 'no' else backend.precision}",
        "value": f"{batch / step_s:.2f} samples/s ({step_s:.3f} s/step)",
        "peak": f"{peak / 2**30:.2f} GiB" + ("" if cuda else " RSS"),
    }


def _child(args: list[str], env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env={**full_env, **(env or {})}, timeout=timeout
    )


def _failed(row: str, proc: subprocess.CompletedProcess) -> dict:
    last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
    return {"row": row, "what": "failed", "value": last[:100], "peak": ""}


def train_rows(preset: str, batch: int, steps: int) -> list[dict]:
    rows = []
    for zero in ("off", "zero2"):
        # ZeRO-2 runs under a launcher's environment: one process of a world of one
        launch = {"LOCAL_RANK": "0", "RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1"}
        launch |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
        with tempfile.TemporaryDirectory() as tmp:
            proc = _child(
                [__file__, "--train-row", preset, str(batch), zero, str(steps), tmp],
                env=launch if zero == "zero2" else None,
            )
        row = f"train {'ZeRO-2' if zero == 'zero2' else 'DDP'}"
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else _failed(row, proc))
    return rows


def inference_rows(preset: str, device: str, dtype: str, repeats: int) -> list[dict]:
    proc = _child(
        [str(REPO / "bench" / "inference.py"), "--preset", preset, "--device", device, "--dtype", dtype]
        + ["--repeats", str(repeats)]
    )
    if proc.returncode != 0:
        return [_failed("infer", proc)]
    found = {}
    for line in proc.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] in ("no reuse (original)", "reuse K/V"):
            found[cells[0]] = float(cells[1])
    what = f"{preset}, one 64-step chunk, batch 1, {dtype}"
    return [
        {"row": f"infer {name}", "what": what, "value": f"{1000 * s:.1f} ms / chunk", "peak": ""}
        for name, s in found.items()
    ]


def simulator_rows(envs: int, episodes: int, max_steps: int) -> list[dict]:
    proc = _child(
        [str(REPO / "bench" / "evaluate.py"), "--episodes", str(episodes), "--max-steps", str(max_steps)]
        + ["--envs", "1", str(envs)]
    )
    if proc.returncode != 0:
        return [_failed("sim", proc)]
    rows = []
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            rows.append(
                {
                    "row": f"sim {r['envs']} process(es)",
                    "what": f"{r['episodes']} episodes x {max_steps} steps, policy on {r.get('device', 'cpu')}",
                    "value": f"{r['episodes_per_hour']:,.0f} episodes/h",
                    "peak": f"policy {1e3 * r['policy_s_per_step']:.0f} / sim {1e3 * r['sim_s_per_step']:.0f} ms/step",
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default=None, help="model preset (default: rdt-1b on a GPU, tiny on CPU)")
    p.add_argument("--batch", type=int, default=4, help="per-device training batch (default 4, the recipe's)")
    p.add_argument("--steps", type=int, default=5, help="timed training steps per row (median; default 5)")
    p.add_argument("--repeats", type=int, default=3, help="timed chunks per inference mode (default 3)")
    p.add_argument("--envs", type=int, default=4, help="simulators sharing one policy in the last row (default 4)")
    p.add_argument("--episodes", type=int, default=8, help="episodes per simulator row (default 8)")
    p.add_argument("--max-steps", type=int, default=48, help="policy steps per episode (default 48)")
    p.add_argument("--skip", nargs="*", default=[], choices=["train", "infer", "sim"], help="rows to leave out")
    p.add_argument("--train-row", nargs=5, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.train_row:
        preset, batch, zero, steps, out = args.train_row
        print(json.dumps(train_row(preset, int(batch), zero, int(steps), Path(out))))
        return 0

    import torch

    cuda = torch.cuda.is_available()
    preset = args.preset or ("rdt-1b" if cuda else "tiny")
    device, dtype = ("cuda", "bf16") if cuda else ("cpu", "fp32")
    t0 = time.monotonic()
    rows = []
    if "train" not in args.skip:
        rows += train_rows(preset, args.batch, args.steps)
    if "infer" not in args.skip:
        rows += inference_rows(preset, device, dtype, args.repeats)
    if "sim" not in args.skip:
        rows += simulator_rows(args.envs, args.episodes, args.max_steps)
    name = torch.cuda.get_device_name() if cuda else f"CPU ({os.cpu_count()} cores)"
    print(f"GPU check on {name}, torch {torch.__version__}, {time.monotonic() - t0:.0f} s")
    width = max(len(r["what"]) for r in rows) if rows else 10
    print(f"| {'row':<26} | {'setting':<{width}} | {'measured':<34} | {'memory / split':<28} |")
    print(f"|{'-' * 28}|{'-' * (width + 2)}|{'-' * 36}|{'-' * 30}|")
    for r in rows:
        print(f"| {r['row']:<26} | {r['what']:<{width}} | {r['value']:<34} | {r['peak']:<28} |")
    return 1 if any(r["what"] == "failed" for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
