"""`stats`: RDT's dataset_stat.json formulas checked against a direct numpy computation."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from official_layout import write_demo_file
from rdt import cli
from rdt.data import TRAIN_FORMAT
from rdt.data.stats import compute_stats, load_stats
from rdt.errors import UserError
from rdt.libero import mapping
from rdt.libero.convert import convert

TASKS = ("KITCHEN_SCENE7_open_the_microwave", "KITCHEN_SCENE7_put_the_white_bowl_on_the_plate")


def rdt_std(x: np.ndarray) -> np.ndarray:
    """RDT's state std, written out per column as in compute_dataset_stat_hdf5.py (x: all steps (N,128))."""
    out = np.zeros(x.shape[1])
    for j in range(x.shape[1]):
        col = x[:, j].astype(np.float64)
        z = np.where(np.abs(col) > 1e-8, col, 0.0)
        nz = max(int((np.abs(col) > 1e-8).sum()), 1)
        out[j] = np.sqrt(max((z**2).sum() / nz - (z.sum() / len(col)) ** 2 * len(col) / nz, 0.0))
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("stats")
    for k, task in enumerate(TASKS):
        write_demo_file(root / f"{task}_demo.hdf5", task, None, [12 + 3 * k, 15, 11][: 3 - k], seed=k, image_size=16)
    out = root / "data.h5"
    convert([str(root)], out)
    return out


def test_stats_match_direct_numpy(data, tmp_path):
    with h5py.File(data, "r") as f:
        eps = [f["episodes"][n] for n in sorted(f["episodes"])]
        states = np.concatenate([e["state"][()] for e in eps])
        actions = np.concatenate([e["action"][()] for e in eps]).astype(np.float64)
        tasks = [e.attrs["task"] for e in eps]
        lengths = [e.attrs["num_steps"] for e in eps]
    out = tmp_path / "dataset_stat.json"
    assert cli.main(["stats", "--data", str(data), "--out", str(out), "--name", "mine"]) == 0
    s = json.loads(out.read_text())["mine"]
    assert s["dataset_name"] == "mine"
    np.testing.assert_allclose(s["state_mean"], states.astype(np.float64).mean(0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(s["state_std"], rdt_std(states), rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(s["state_min"], states.min(0))
    np.testing.assert_array_equal(s["state_max"], states.max(0))
    np.testing.assert_allclose(s["action_mean"], actions.mean(0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(s["action_std"], actions.std(0), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(s["action_q01"], np.quantile(actions, 0.01, axis=0), rtol=1e-12)
    np.testing.assert_allclose(s["action_q99"], np.quantile(actions, 0.99, axis=0), rtol=1e-12)
    np.testing.assert_array_equal(s["action_min"], actions.min(0))
    np.testing.assert_array_equal(s["action_max"], actions.max(0))
    assert all(len(s[k]) == 128 for k in s if k.startswith(("state_", "action_")))
    assert s["num_episodes"] == 5 and s["num_steps"] == sum(lengths) == states.shape[0]
    assert s["episodes_per_task"] == {TASKS[0]: 3, TASKS[1]: 2}
    assert s["steps_per_task"] == {t: sum(n for n, tt in zip(lengths, tasks) if tt == t) for t in TASKS}
    # unused slots have zero std; the gripper opening slot (values in [0, 1]) a positive one
    assert s["state_std"][100] == 0.0 and s["state_std"][10] > 0
    assert load_stats(out, "mine")["state_mean"] == s["state_mean"]


def test_std_formula_on_values_with_zeros(tmp_path):
    """A column with exact zeros: RDT's std ignores them in the second moment but not in the mean term."""
    path = tmp_path / "handmade.h5"
    col = np.array([0.0, 0.0, 1.0, 3.0, 1e-9, -2.0])
    with h5py.File(path, "w") as f:
        f.attrs["format"] = TRAIN_FORMAT
        f.attrs["mask"] = mapping.MASK
        for i, part in enumerate((col[:4], col[4:])):
            g = f.create_group(f"episodes/{i:06d}")
            state = np.zeros((len(part), 128), np.float32)
            state[:, 0] = part
            g.create_dataset("state", data=state)
            g.create_dataset("action", data=np.zeros((len(part), 128), np.float32))
            g.attrs["task"] = "t"
    s = compute_stats(path)["libero"]
    x = col.astype(np.float32).astype(np.float64)
    nz = np.abs(x) > 1e-8
    expected = np.sqrt((x[nz] ** 2).sum() / nz.sum() - (x[nz].sum() / 6) ** 2 * 6 / nz.sum())
    assert s["state_std"][0] == pytest.approx(expected, rel=1e-12)
    assert s["state_std"][0] != pytest.approx(x.std(), rel=1e-3)  # not the plain std
    assert s["state_mean"][0] == pytest.approx(x.mean(), rel=1e-12)
    assert s["state_std"][1] == 0.0  # all-zero column: nz_cnt clipped to 1


def test_bad_inputs(tmp_path, data):
    with pytest.raises(UserError, match="format="):
        p = tmp_path / "other.h5"
        h5py.File(p, "w").close()
        compute_stats(p)
    with pytest.raises(UserError, match="not found"):
        compute_stats(tmp_path / "missing.h5")
    out = tmp_path / "s.json"
    out.write_text(json.dumps(compute_stats(data)))
    with pytest.raises(UserError, match="no dataset entry 'agilex'"):
        load_stats(out, "agilex")
