"""Evaluation throughput in the real LIBERO simulator: episodes per hour with 1 and with 2 simulator processes
(tiny RDT policy, short episodes), their ratio, and policy time vs simulator time per executed step.

Builds its own tiny checkpoint (random weights) and tiny-T5 embeddings, then runs ``rdt.evaluation.run.evaluate`` twice
on the same (task, init state) jobs. Episodes per hour count everything an evaluation job pays: process start-up,
environment creation, resets, settle steps, stepping and policy calls. Simulator time per step is the 1-process
run's wall time minus its policy time, divided by the steps executed (resets and settling included).

    python bench/evaluate.py [--episodes 4] [--max-steps 32] [--horizon 8] [--camera-size 128] [--render-threads N]
                             [--envs 1 2] [--device cuda]

Software EGL (Mesa llvmpipe) renders with several threads, so one simulator process keeps more than one core busy
(``cores_busy``, CPU seconds of the parent and its workers per wall second): on 2 cores the 1-process baseline then
already uses part of the second core and the ratio is below what 2 independent single-core processes give.
``--render-threads 1`` (``LP_NUM_THREADS``) holds each process to one rendering thread, the condition under which
the ratio measures the scheduler alone.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

SUITE = "libero_goal"
TASK = "put_the_bowl_on_the_plate"


class TimedPolicy:
    """Counts policy calls and the steps they plan for (rows), timing each call."""

    def __init__(self, inner):
        self.inner, self.calls, self.rows, self.seconds = inner, 0, 0, 0.0

    def act(self, *args, **kwargs):
        t0 = time.perf_counter()
        out = self.inner.act(*args, **kwargs)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        self.rows += len(args[0])
        return out


def build_inputs(root: Path, camera_size: int) -> tuple[Path, dict]:
    import torch

    from rdt.encoders import load_text_encoder
    from rdt.libero import suites
    from rdt.model.checkpoint import save_checkpoint
    from rdt.model.config import RDTConfig
    from rdt.model.runner import build_runner

    config = RDTConfig.preset("tiny")
    runner = build_runner(config, seed=0)
    with torch.no_grad():
        for p in runner.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.05)
    ckpt = save_checkpoint(
        root / "ckpt",
        runner,
        config,
        pipeline={
            "text_encoder": "tiny",
            "vision_encoder": "tiny",
            "image_size": camera_size,
            "control_frequency": 20,
            "action_space": "delta_eef",
            "step": 0,
            "run": "bench",
        },
    )
    task = suites.select_tasks(SUITE, [TASK])[0]
    lang = {task.name: load_text_encoder("tiny").encode([task.language])[0]}
    return ckpt, lang


def run(ckpt: Path, lang: dict, envs: int, args, out: Path) -> dict:
    from rdt.evaluation.policy import Policy
    from rdt.evaluation.run import evaluate
    from rdt.evaluation.settings import Settings

    policy = TimedPolicy(Policy.from_checkpoint(ckpt, device=args.device, seed=0))
    settings = Settings(
        suite=SUITE,
        tasks=(TASK,),
        episodes=args.episodes,
        horizon=args.horizon,
        max_steps=args.max_steps,
        envs=envs,
        seed=0,
        camera_size=args.camera_size,
        videos_per_task=0,
    )
    t0, cpu0 = time.monotonic(), cpu_seconds()
    summary = evaluate(policy, settings, out, lang)
    wall, cpu = time.monotonic() - t0, cpu_seconds() - cpu0
    steps = sum(json.loads(line)["steps"] for line in (out / "episodes.jsonl").read_text().splitlines())
    return {
        "envs": envs,
        "device": args.device,
        "episodes": summary["overall"]["episodes"],
        "steps": steps,
        "wall_s": round(wall, 1),
        "episodes_per_hour": round(3600 * summary["overall"]["episodes"] / wall, 1),
        "policy_calls": policy.calls,
        "policy_s_per_call": round(policy.seconds / max(policy.calls, 1), 4),
        "policy_s_per_step": round(policy.seconds / max(steps, 1), 4),
        "sim_s_per_step": round((wall - policy.seconds) / max(steps, 1), 4),
        "cpu_s": round(cpu, 1),
        "cores_busy": round(cpu / wall, 2),
    }


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the simulator workers, joined when a run ends)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=4, help="episodes (init states 0..N-1 of one task)")
    p.add_argument("--max-steps", type=int, default=32, help="policy steps per episode")
    p.add_argument("--horizon", type=int, default=8, help="execution horizon")
    p.add_argument("--camera-size", type=int, default=128, help="camera resolution")
    p.add_argument("--render-threads", type=int, help="LP_NUM_THREADS for llvmpipe (default: Mesa's, one per core)")
    p.add_argument("--envs", type=int, nargs=2, default=[1, 2], metavar=("A", "B"), help="the two simulator counts")
    p.add_argument("--device", default=None, help="the policy's torch device (default: cuda if available, else cpu)")
    args = p.parse_args()
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.render_threads:
        os.environ["LP_NUM_THREADS"] = str(args.render_threads)  # inherited by the spawned simulator workers
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ckpt, lang = build_inputs(root, args.camera_size)
        one = run(ckpt, lang, args.envs[0], args, root / "one")
        two = run(ckpt, lang, args.envs[1], args, root / "two")
    for r in (one, two):
        print(json.dumps(r))
    print(
        f"episodes/hour: {one['envs']} process(es) {one['episodes_per_hour']}, {two['envs']} processes "
        f"{two['episodes_per_hour']}, "
        f"ratio {two['episodes_per_hour'] / one['episodes_per_hour']:.2f}x"
    )
    print(
        f"per executed step (1 process): policy {1000 * one['policy_s_per_step']:.1f} ms, simulator "
        f"{1000 * one['sim_s_per_step']:.1f} ms (resets and settling included); policy share "
        f"{100 * one['policy_s_per_step'] / (one['policy_s_per_step'] + one['sim_s_per_step']):.1f} %"
    )
    print(
        f"cores busy: 1 process {one['cores_busy']}, 2 processes {two['cores_busy']} "
        f"(render threads: {os.environ.get('LP_NUM_THREADS', 'Mesa default')})"
    )


if __name__ == "__main__":
    main()
