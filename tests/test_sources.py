"""Demo sources: official and regenerated robomimic files (observation/action pairing detected per file), no-op
filtering, frame sizes, and LeRobot-format datasets. Every input is written by an independent writer in the tests
(tests/official_layout.py, tests/lerobot_layout.py), never by the converter's own code."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from official_layout import write_demo_file
from rdt import cli
from rdt.errors import UserError
from rdt.libero import mapping
from rdt.libero.convert import convert

TASK = "KITCHEN_SCENE7_open_the_microwave"
OTHER = "KITCHEN_SCENE7_put_the_white_bowl_on_the_plate"
SIZE = 32


def _demo_file(folder, recorded="after", task=TASK, steps=(14, 12), seed=5, **kw):
    folder.mkdir(parents=True, exist_ok=True)
    return write_demo_file(folder / f"{task}_demo.hdf5", task, "open the microwave", list(steps), seed=seed,
                           image_size=kw.pop("image_size", SIZE), recorded=recorded, **kw)


def _read_episodes(path):
    with h5py.File(path, "r") as f:
        eps = []
        for name in sorted(f["episodes"]):
            g = f["episodes"][name]
            eps.append({"attrs": dict(g.attrs), "state": g["state"][()], "action": g["action"][()],
                        "libero_action": g["libero_action"][()],
                        **{f"images/{s}": g[f"images/{s}"][()] for s in g["images"]}})
        return dict(f.attrs), eps


def _assert_same_samples(a, b):
    for key in ("state", "action", "libero_action", "images/exterior", "images/right_wrist"):
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


# ------------------------------------------------------------------------------------------------ pairing

def test_official_and_regenerated_recordings_of_one_episode_convert_to_the_same_samples(tmp_path):
    """The same episodes written after-action (official) and before-action (regenerated): each file's
    convention is detected and recorded, and the training samples agree to the frame (the regenerated file
    has one more step at the start: the observation before the first action, which official files do not keep)."""
    official = _demo_file(tmp_path / "official", "after")
    regenerated = _demo_file(tmp_path / "regenerated", "before")
    out_o, out_r = tmp_path / "o.h5", tmp_path / "r.h5"
    s_o = convert([str(official)], out_o, suite="libero_90")
    s_r = convert([str(regenerated)], out_r, suite="libero_90")
    assert s_o["tasks"][TASK]["pairing"] == mapping.OBS_AFTER_ACTION
    assert s_r["tasks"][TASK]["pairing"] == mapping.OBS_BEFORE_ACTION
    attrs_o, eps_o = _read_episodes(out_o)
    attrs_r, eps_r = _read_episodes(out_r)
    assert json.loads(attrs_o["obs_conventions"]) == {str(official): mapping.OBS_AFTER_ACTION}
    assert json.loads(attrs_r["obs_conventions"]) == {str(regenerated): mapping.OBS_BEFORE_ACTION}
    assert [e["attrs"]["obs_convention"] for e in eps_r] == [mapping.OBS_BEFORE_ACTION] * 2
    assert [e["attrs"]["num_steps"] for e in eps_o] == [13, 11] and [e["attrs"]["num_steps"] for e in eps_r] == [14, 12]
    for o, r in zip(eps_o, eps_r):
        _assert_same_samples(o, {k: v[1:] if k != "attrs" else v for k, v in r.items()})
    # the regenerated file's actions are its own actions, unshifted: sample t is (obs[t], actions[t])
    with h5py.File(regenerated, "r") as f:
        np.testing.assert_array_equal(eps_r[0]["libero_action"], f["data/demo_0/actions"][()])
        np.testing.assert_allclose(eps_r[0]["state"][:, :7], f["data/demo_0/obs/joint_states"][()], rtol=1e-6)


def test_mixed_conventions_in_one_conversion_are_detected_per_file(tmp_path):
    _demo_file(tmp_path / "d", "after", task=TASK)
    _demo_file(tmp_path / "d", "before", task=OTHER, seed=6)
    summary = convert([str(tmp_path / "d")], tmp_path / "x.h5", suite="libero_90")
    assert {t: s["pairing"] for t, s in summary["tasks"].items()} == {
        TASK: mapping.OBS_AFTER_ACTION, OTHER: mapping.OBS_BEFORE_ACTION}


def test_a_file_matching_neither_convention_is_an_error_naming_it(tmp_path):
    path = _demo_file(tmp_path / "d", "unrelated")
    with pytest.raises(UserError) as err:
        convert([str(path)], tmp_path / "x.h5")
    assert str(path) in str(err.value) and "match neither" in str(err.value)
    assert not (tmp_path / "x.h5").exists()


def test_a_still_robot_cannot_be_told_apart_and_is_reported(tmp_path):
    still = np.tile(np.linspace(-1, 1, 7), (14, 1))
    path = _demo_file(tmp_path / "d", "after", steps=(14,),
                      replace={"obs/joint_states": still, "states": np.concatenate(
                          [np.zeros((14, 1)), still, np.zeros((14, 20))], axis=1)})
    with pytest.raises(UserError, match="cannot tell whether observations are recorded before or after"):
        convert([str(path)], tmp_path / "x.h5")


# ------------------------------------------------------------------------------------------------ no-ops

def test_noops_are_kept_by_default_and_dropped_and_counted_when_asked(tmp_path, capsys):
    # official file: actions[1:] are the paired ones; no-ops at demo steps 3, 4, 5 and 9 -> paired steps 2,3,4,8
    path = _demo_file(tmp_path / "d", "after", steps=(16,), noops={0: [3, 4, 5, 9]})
    with h5py.File(path, "r") as f:
        actions = f["data/demo_0/actions"][()]
    keep = np.ones(15, dtype=bool)
    keep[[2, 3, 4, 8]] = False
    assert mapping.noop_mask(actions[1:]).tolist() == (~keep).tolist()

    summary = convert([str(path)], tmp_path / "all.h5")
    assert summary["noops"] == 0 and summary["steps"] == 15
    attrs, eps = _read_episodes(tmp_path / "all.h5")
    assert not attrs["drop_noops"] and attrs["dropped_noops"] == 0

    assert cli.main(["convert", "--demos", str(path), "--out", str(tmp_path / "some.h5"), "--drop-noops"]) == 0
    out = capsys.readouterr().out
    assert "4 no-op steps dropped" in out
    attrs, dropped = _read_episodes(tmp_path / "some.h5")
    assert attrs["drop_noops"] and attrs["dropped_noops"] == 4
    assert dropped[0]["attrs"]["dropped_noops"] == 4 and dropped[0]["attrs"]["num_steps"] == 11
    _assert_same_samples(dropped[0], {k: v[keep] for k, v in eps[0].items() if k != "attrs"})


def test_noop_rule_follows_openvla(tmp_path):
    a = np.zeros((6, 7))
    a[:, 6] = -1
    a[1, :3] = 0.5                  # moves
    a[3, 6] = 1                     # gripper closes: never a no-op
    a[4, 6] = 1                     # still, gripper unchanged w.r.t. the previous KEPT command -> no-op
    a[5, 0] = 5e-5                  # below the threshold -> no-op
    a[5, 6] = 1
    assert mapping.noop_mask(a).tolist() == [True, False, True, False, True, True]


# ------------------------------------------------------------------------------------------------ frame size

def test_frames_are_kept_or_resized_by_a_setting_and_the_size_is_recorded(tmp_path):
    big = _demo_file(tmp_path / "big", "before", image_size=64, steps=(12,))
    small = _demo_file(tmp_path / "small", "after", task=OTHER, image_size=SIZE, steps=(12,), seed=7)
    convert([str(big)], tmp_path / "keep.h5")
    attrs, eps = _read_episodes(tmp_path / "keep.h5")
    assert attrs["image_size"] == 64 and eps[0]["images/exterior"].shape == (12, 64, 64, 3)
    with pytest.raises(UserError, match="--image-size"):
        convert([str(tmp_path / "big"), str(tmp_path / "small")], tmp_path / "mixed.h5", suite="libero_90")
    convert([str(tmp_path / "big"), str(tmp_path / "small")], tmp_path / "r.h5", suite="libero_90", image_size=SIZE)
    attrs, eps_r = _read_episodes(tmp_path / "r.h5")
    assert attrs["image_size"] == SIZE
    assert eps_r[0]["images/exterior"].shape == (12, SIZE, SIZE, 3)
    np.testing.assert_array_equal(eps_r[0]["images/exterior"], mapping.resize(eps[0]["images/exterior"], SIZE))
    _, eps_small = _read_episodes(tmp_path / "r.h5")
    assert eps_small[1]["images/right_wrist"].shape == (11, SIZE, SIZE, 3)      # kept as it was


def test_training_file_records_suite_tasks_and_dataset_identity(tmp_path):
    _demo_file(tmp_path / "d", "after")
    _demo_file(tmp_path / "d", "after", task=OTHER, seed=8)
    s1 = convert([str(tmp_path / "d")], tmp_path / "a.h5", suite="libero_90")
    s2 = convert([str(tmp_path / "d")], tmp_path / "b.h5", suite="libero_90", selectors=[TASK])
    with h5py.File(tmp_path / "a.h5", "r") as f:
        created = json.loads(f.attrs["created_by"])
    assert created["suite"] == "libero_90" and created["tasks"] == [TASK, OTHER]
    assert created["dataset"] == s1["dataset_id"] and created["source"] == "official"
    assert s1["dataset_id"] != s2["dataset_id"]
    assert convert([str(tmp_path / "d")], tmp_path / "c.h5", suite="libero_90")["dataset_id"] == s1["dataset_id"]


# ------------------------------------------------------------------------------------------------ checkpoints know their data

def test_export_records_suite_tasks_and_dataset_and_evaluate_defaults_to_them(tmp_path):
    import torch

    import train_helpers as h
    from rdt import train
    from rdt.evaluate import trained_suite_and_tasks

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = h.make_data(tmp_path / "data")
        out = tmp_path / "run"
        train.train_segment(h.load_run(data), 1, out)
    finally:
        torch.set_num_threads(threads)
    with h5py.File(data["data"], "r") as f:
        created = json.loads(f.attrs["created_by"])
    pipeline = json.loads((train.export_dir(out, 1) / "pipeline.json").read_text())
    assert pipeline["suite"] == created["suite"] == "libero_90"
    assert pipeline["tasks"] == created["tasks"] == list(h.TASKS)          # suite order
    assert pipeline["dataset"] == created["dataset"] and len(pipeline["dataset"]) == 16
    export = str(train.export_dir(out, 1))
    assert trained_suite_and_tasks(export, None, None) == (pipeline["suite"], pipeline["tasks"])
    assert trained_suite_and_tasks(export, pipeline["suite"], ["0"]) == (pipeline["suite"], ["0"])
    other = "libero_10" if pipeline["suite"] != "libero_10" else "libero_90"
    assert trained_suite_and_tasks(export, other, None) == (other, ["all"])
    with pytest.raises(UserError, match="--suite is not given"):
        trained_suite_and_tasks(str(tmp_path), None, None)


def test_plan_passes_the_conversion_settings_and_keeps_default_keys(tmp_path):
    from rdt.plan import Plan, key_of

    base = {"demos": {"source": "folder", "folder": str(tmp_path), "suite": "libero_90", "tasks": [TASK]},
            "train": {"max_steps": 2, "model": "tiny", "init_from": None, "text_encoder": "tiny",
                      "vision_encoder": "tiny", "effective_batch_size": 2, "per_device_batch_size": 2,
                      "checkpointing_period": 2},
            "eval": {"exec_horizons": [8], "episodes_per_task": 1, "max_steps": 12},
            "runs": {"plain": {}, "noops": {"data": {"drop_noops": True, "image_size": 64}},
                     "lerobot": {"demos": {"source": "lerobot"}}}}
    p = Plan(base)
    plain, noops, lerobot = (p.data_settings(r) for r in ("plain", "noops", "lerobot"))
    assert "drop_noops" not in plain and "image_size" not in plain          # existing data keys unchanged
    assert noops["drop_noops"] is True and noops["image_size"] == 64
    assert lerobot["demos"] == {"source": "lerobot", "folder": str(tmp_path.resolve())}
    assert len({key_of(plain), key_of(noops), key_of(lerobot)}) == 3
    assert p.demos_input(lerobot["demos"]) == str(tmp_path.resolve())
