"""Which LIBERO task makes a study that can decide? Open-loop replay of a few scripted demos on held-out init states.

For each candidate task: the scripted expert writes DEMOS demos from init states 25.. (`rdt expert`), then each of
the init states 0..EPISODES-1 replays its nearest demo open-loop (`rdt replay`). A task where replay succeeds from
most init states cannot tell imitation from a tape recorder; the study wants one where it fails on most. The
results bundle (per task: episodes.jsonl, summary.json, replay_plan.json, expert_summary.json) lands in OUT;
`python scripts/results_tables.py` turns it into docs/results/replay_candidates.md.

    python scripts/replay_candidates.py --out docs/results/replay_candidates [--demos 5] [--episodes 20]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rdt.evaluation.ledger import EPISODES_FILE  # noqa: E402
from rdt.layout import SUMMARY  # noqa: E402
from rdt.libero.expert import SUMMARY_FILE as EXPERT_SUMMARY  # noqa: E402
from rdt.replay import PLAN_FILE  # noqa: E402

CANDIDATES = [
    ("libero_object", "pick_up_the_alphabet_soup_and_place_it_in_the_basket"),
    ("libero_object", "pick_up_the_cream_cheese_and_place_it_in_the_basket"),
    ("libero_object", "pick_up_the_butter_and_place_it_in_the_basket"),
    ("libero_goal", "put_the_bowl_on_the_plate"),
    ("libero_goal", "put_the_cream_cheese_in_the_bowl"),
    ("libero_spatial", "pick_up_the_black_bowl_from_table_center_and_place_it_on_the_plate"),
    ("libero_90", "KITCHEN_SCENE1_put_the_black_bowl_on_the_plate"),
]
KEEP = (EPISODES_FILE, SUMMARY, PLAN_FILE)


def rdt(*args: str) -> None:
    env = dict(os.environ, MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"), PYOPENGL_PLATFORM="egl")
    subprocess.run([sys.executable, "-m", "rdt", *args], check=True, env=env, stdin=subprocess.DEVNULL)


def init_variation(suite: str, name: str) -> dict:
    """How much the task's 50 init states vary: dims that vary at all, and the largest std over dims (m or rad)."""
    from rdt.libero import env as libero_env
    from rdt.libero.suites import select_tasks

    states = libero_env.init_states(select_tasks(suite, [name])[0])[:, 1:]
    std = states.std(axis=0)
    return {"dims": int(states.shape[1]), "varying_dims": int((std > 1e-6).sum()), "max_std": float(std.max())}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--demos", type=int, default=5)
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--only", nargs="*", help="task names to (re)measure; default all candidates")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for suite, name in CANDIDATES:
        if args.only and name not in args.only:
            continue
        dest = args.out / f"{suite}__{name}"
        if (dest / SUMMARY).is_file() and not args.only:
            print(f"{dest}: done already", flush=True)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            demos, replay = Path(tmp) / "demos", Path(tmp) / "replay"
            t0 = time.monotonic()
            try:
                rdt("expert", "--suite", suite, "--tasks", name, "--episodes", str(args.demos),
                    "--max-attempts", str(2 * args.demos), "--first-init-state", "25", "--camera-size", "32",
                    "--workers", str(args.workers), "--out", str(demos))  # fmt: skip
            except subprocess.CalledProcessError as e:
                print(f"{name}: expert failed ({e}); skipped", flush=True)
                continue
            t1 = time.monotonic()
            expert = json.loads((demos / EXPERT_SUMMARY).read_text())
            if not any(t["successes"] for t in expert["tasks"]):
                dest.mkdir(parents=True, exist_ok=True)
                (dest / EXPERT_SUMMARY).write_text(json.dumps(expert, indent=1))
                print(f"{name}: the expert solved none of its attempts; no replay", flush=True)
                continue
            rdt("replay", "--demos", str(demos), "--suite", suite, "--tasks", name, "--episodes",
                str(args.episodes), "--envs", str(args.workers), "--camera-size", "32", "--videos-per-task", "0",
                "--out", str(replay))  # fmt: skip
            t2 = time.monotonic()
            tmp_dest = dest.with_name(dest.name + ".tmp")
            shutil.rmtree(tmp_dest, ignore_errors=True)
            tmp_dest.mkdir(parents=True)
            for f in KEEP:
                shutil.copy(replay / f, tmp_dest / f)
            (tmp_dest / EXPERT_SUMMARY).write_text(json.dumps(expert, indent=1))
            facts = {"expert_seconds": round(t1 - t0, 1), "replay_seconds": round(t2 - t1, 1)}
            facts |= init_variation(suite, name)
            (tmp_dest / "candidate.json").write_text(json.dumps(facts, indent=1))
            shutil.rmtree(dest, ignore_errors=True)
            tmp_dest.rename(dest)
        s = json.loads((dest / SUMMARY).read_text())["overall"]
        print(f"{suite}/{name}: replay {s['successes']}/{s['episodes']} ({facts})", flush=True)
    return 0


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    sys.exit(main())
