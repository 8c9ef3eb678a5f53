"""Inference benchmark: time per action chunk (5 DPM-Solver++ steps) with and without condition reuse.

"reuse" computes every cross-attention block's keys/values of the language and image tokens once per chunk;
"no reuse" recomputes them at each of the 5 steps, as the original code does (both adapt the conditions once).
The model is the chosen architecture with random weights (final layer randomised too, so actions are not all
zero), batch 1, ``--lang-len`` language tokens and the full image token count of the preset (4374 for the
released presets). Reports the median of ``--repeats`` timed runs after one warm-up, their ratio, and the largest
absolute difference between the two modes' actions from the same initial noise.

    python bench/inference.py                                   # rdt-170m on CPU, 2 threads
    python bench/inference.py --preset rdt-1b --device cuda --dtype bf16
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rdt.model.config import PRESETS, RDTConfig  # noqa: E402
from rdt.model.runner import RDTRunner  # noqa: E402
from rdt.utils.progress import Progress  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=PRESETS, default="rdt-170m", help="architecture (default: %(default)s)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: %(default)s)")
    p.add_argument(
        "--dtype",
        choices=sorted(DTYPES),
        default="fp32",
        help="fp32, or bf16 autocast (parameters stay fp32) (default: %(default)s)",
    )
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=3, help="timed chunks per mode (default: %(default)s)")
    p.add_argument("--lang-len", type=int, default=32, help="language tokens (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    cfg = RDTConfig.preset(args.preset)
    runner = RDTRunner(cfg)
    with torch.no_grad():
        runner.model.final_layer.ffn_final.fc2.weight.normal_(std=0.02)
    runner = runner.to(device).eval()
    b = 1
    inputs = dict(
        lang_tokens=torch.randn(b, args.lang_len, cfg.lang_token_dim, device=device),
        lang_mask=torch.ones(b, args.lang_len, dtype=torch.bool, device=device),
        img_tokens=torch.randn(b, cfg.img_cond_len, cfg.img_token_dim, device=device),
        state_tokens=torch.randn(b, 1, cfg.state_token_dim, device=device),
        action_mask=torch.ones(b, 1, cfg.state_token_dim, device=device),
        ctrl_freqs=torch.tensor([20], device=device),
    )
    noise = torch.randn(b, cfg.pred_horizon, cfg.action_dim, device=device)
    autocast = (
        torch.autocast(device.type, dtype=DTYPES[args.dtype]) if args.dtype != "fp32" else contextlib.nullcontext()
    )

    def chunk(reuse: bool) -> tuple[float, torch.Tensor]:
        _sync(device)
        start = time.perf_counter()
        with autocast:
            actions = runner.predict_action(**inputs, noise=noise, reuse_conditions=reuse)
        _sync(device)
        return time.perf_counter() - start, actions.float().cpu()

    times: dict[bool, list[float]] = {True: [], False: []}
    actions: dict[bool, torch.Tensor] = {}
    with Progress((args.repeats + 1) * 2, f"bench {args.preset}", unit="chunk", every=10.0) as progress:
        for reuse in (True, False):
            chunk(reuse)  # warm-up
            progress.update(1)
            for _ in range(args.repeats):
                seconds, actions[reuse] = chunk(reuse)
                times[reuse].append(seconds)
                progress.update(1, last_s=seconds)
    with_reuse, without = statistics.median(times[True]), statistics.median(times[False])
    diff = (actions[True] - actions[False]).abs().max().item()
    params = runner.num_parameters()
    print(
        f"\nRDT inference benchmark: preset {args.preset} ({params / 1e6:.1f}M params), device {args.device}"
        f" ({torch.get_num_threads()} threads)"
        if device.type == "cpu"
        else f"\nRDT inference benchmark: preset {args.preset} ({params / 1e6:.1f}M params), device {args.device}"
    )
    print(
        f"dtype {args.dtype}, batch {b}, {args.lang_len} language + {cfg.img_cond_len} image tokens, "
        f"{cfg.num_inference_timesteps} steps per chunk, median of {args.repeats}"
    )
    print(f"| {'mode':<22} | {'s / chunk':>10} | {'chunks / s':>10} |")
    print(f"|{'-' * 24}|{'-' * 12}|{'-' * 12}|")
    print(f"| {'no reuse (original)':<22} | {without:>10.4f} | {1 / without:>10.2f} |")
    print(f"| {'reuse K/V':<22} | {with_reuse:>10.4f} | {1 / with_reuse:>10.2f} |")
    print(f"speed-up (no reuse / reuse): {without / with_reuse:.2f}x")
    print(f"max |actions(reuse) - actions(no reuse)|: {diff:.3e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
