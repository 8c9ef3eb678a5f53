"""Shared helpers for tests that use the real LIBERO simulator.

``expert_demo_dir`` (session-scoped fixture): a folder made once per test session by
``python -m rdt expert --suite libero_object --tasks pick_up_the_salad_dressing_and_place_it_in_the_basket
--episodes 2`` (the shortest libero_object expert episodes, ~150 steps), holding

    pick_up_the_salad_dressing_and_place_it_in_the_basket_demo.hdf5   official layout, demo_0 and demo_1
    expert_summary.json                                               per demo: init_state, seed, num_samples

Registered in conftest.py, so every test module can request it and it is made once per session. Import
``EXPERT_TASK`` / :func:`expert_demo_file` from here (``tests/`` is on sys.path) to find the file. A demo replays from
``rdt.libero.demo_file.replay_start(env, init_states[init_state], seed)`` followed by its ``actions``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rdt.libero.suites import select_tasks

EXPERT_SUITE = "libero_object"
EXPERT_TASK_NAME = "pick_up_the_salad_dressing_and_place_it_in_the_basket"
EXPERT_TASK = select_tasks(EXPERT_SUITE, [EXPERT_TASK_NAME])[0]
EXPERT_EPISODES = 2
REPO = Path(__file__).resolve().parents[1]


def sim_env() -> dict[str, str]:
    """Environment for simulator subprocesses: software EGL, few threads."""
    env = dict(os.environ)
    env.setdefault("MUJOCO_GL", "egl")
    env.setdefault("PYOPENGL_PLATFORM", "egl")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def run_rdt(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """``python -m rdt ARGS`` in the repository, stdin closed, output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "rdt", *args],
        cwd=REPO,
        env=sim_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def expert_demo_file(folder: Path) -> Path:
    return Path(folder) / f"{EXPERT_TASK_NAME}_demo.hdf5"


def expert_summary(folder: Path) -> dict:
    return json.loads((Path(folder) / "expert_summary.json").read_text())


@pytest.fixture(scope="session")
def expert_demo_dir(tmp_path_factory) -> Path:
    """A folder with 2 scripted expert demos of EXPERT_TASK, generated once per session."""
    out = tmp_path_factory.mktemp("expert_demos")
    proc = run_rdt(
        "expert",
        "--suite",
        EXPERT_SUITE,
        "--tasks",
        EXPERT_TASK_NAME,
        "--episodes",
        str(EXPERT_EPISODES),
        "--max-attempts",
        "4",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, f"expert failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    assert expert_demo_file(out).is_file(), proc.stdout
    return out
