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
    return write_demo_file(
        folder / f"{task}_demo.hdf5",
        task,
        "open the microwave",
        list(steps),
        seed=seed,
        image_size=kw.pop("image_size", SIZE),
        recorded=recorded,
        **kw,
    )


def _read_episodes(path):
    with h5py.File(path, "r") as f:
        eps = []
        for name in sorted(f["episodes"]):
            g = f["episodes"][name]
            eps.append(
                {
                    "attrs": dict(g.attrs),
                    "state": g["state"][()],
                    "action": g["action"][()],
                    "libero_action": g["libero_action"][()],
                    **{f"images/{s}": g[f"images/{s}"][()] for s in g["images"]},
                }
            )
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
        TASK: mapping.OBS_AFTER_ACTION,
        OTHER: mapping.OBS_BEFORE_ACTION,
    }


def test_a_file_matching_neither_convention_is_an_error_naming_it(tmp_path):
    path = _demo_file(tmp_path / "d", "unrelated")
    with pytest.raises(UserError) as err:
        convert([str(path)], tmp_path / "x.h5")
    assert str(path) in str(err.value) and "match neither" in str(err.value)
    assert not (tmp_path / "x.h5").exists()


def test_a_still_robot_cannot_be_told_apart_and_is_reported(tmp_path):
    still = np.tile(np.linspace(-1, 1, 7), (14, 1))
    path = _demo_file(
        tmp_path / "d",
        "after",
        steps=(14,),
        replace={
            "obs/joint_states": still,
            "states": np.concatenate([np.zeros((14, 1)), still, np.zeros((14, 20))], axis=1),
        },
    )
    with pytest.raises(UserError, match="cannot tell whether observations are recorded before or after"):
        convert([str(path)], tmp_path / "x.h5")
    # the user who knows says so
    assert (
        cli.main(
            ["convert", "--demos", str(path), "--out", str(tmp_path / "x.h5"), "--pairing", mapping.OBS_BEFORE_ACTION]
        )
        == 0
    )
    attrs, eps = _read_episodes(tmp_path / "x.h5")
    assert eps[0]["attrs"]["obs_convention"] == mapping.OBS_BEFORE_ACTION and eps[0]["attrs"]["num_steps"] == 14


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
    a[1, :3] = 0.5  # moves
    a[3, 6] = 1  # gripper closes: never a no-op
    a[4, 6] = 1  # still, gripper unchanged w.r.t. the previous KEPT command -> no-op
    a[5, 0] = 5e-5  # below the threshold -> no-op
    a[5, 6] = 1
    assert mapping.noop_mask(a).tolist() == [True, False, True, False, True, True]


# ------------------------------------------------------------------------------------------------ frame size


def test_frames_are_kept_or_resized_by_a_setting_and_the_size_is_recorded(tmp_path):
    big = _demo_file(tmp_path / "big", "before", image_size=64, steps=(12,))
    _demo_file(tmp_path / "small", "after", task=OTHER, image_size=SIZE, steps=(12,), seed=7)
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
    assert eps_small[1]["images/right_wrist"].shape == (11, SIZE, SIZE, 3)  # kept as it was


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


# ---------------------------------------------------------------------------------------- checkpoints know their data


def test_export_records_suite_tasks_and_dataset_and_evaluate_defaults_to_them(tmp_path):
    import torch

    import train_helpers as h
    from rdt import layout
    from rdt.evaluation.command import trained_suite_and_tasks
    from rdt.training import command

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = h.make_data(tmp_path / "data")
        out = tmp_path / "run"
        command.train_segment(h.load_run(data), 1, out)
    finally:
        torch.set_num_threads(threads)
    with h5py.File(data["data"], "r") as f:
        created = json.loads(f.attrs["created_by"])
    pipeline = json.loads((layout.export_dir(out, 1) / "pipeline.json").read_text())
    assert pipeline["suite"] == created["suite"] == "libero_90"
    assert pipeline["tasks"] == created["tasks"] == list(h.TASKS)  # suite order
    assert pipeline["dataset"] == created["dataset"] and len(pipeline["dataset"]) == 16
    assert pipeline["state_slots"] == list(mapping.STATE_SLOTS)
    export = str(layout.export_dir(out, 1))
    assert trained_suite_and_tasks(export, None, None) == (pipeline["suite"], pipeline["tasks"])
    assert trained_suite_and_tasks(export, pipeline["suite"], ["0"]) == (pipeline["suite"], ["0"])
    other = "libero_10" if pipeline["suite"] != "libero_10" else "libero_90"
    assert trained_suite_and_tasks(export, other, None) == (other, ["all"])
    with pytest.raises(UserError, match="--suite is not given"):
        trained_suite_and_tasks(str(tmp_path), None, None)


def test_plan_passes_the_conversion_settings_and_keeps_default_keys(tmp_path):
    from rdt.plan import Plan, key_of

    base = {
        "demos": {"source": "folder", "folder": str(tmp_path), "suite": "libero_90", "tasks": [TASK]},
        "train": {
            "max_steps": 2,
            "model": "tiny",
            "init_from": None,
            "text_encoder": "tiny",
            "vision_encoder": "tiny",
            "effective_batch_size": 2,
            "per_device_batch_size": 2,
            "checkpointing_period": 2,
        },
        "eval": {"exec_horizons": [8], "episodes_per_task": 1, "max_steps": 12},
        "runs": {
            "plain": {},
            "noops": {"data": {"drop_noops": True, "image_size": 64}},
            "lerobot": {"demos": {"source": "lerobot"}},
        },
    }
    (tmp_path / f"{TASK}_demo.hdf5").touch()  # the selected task's file (the plan checks it is there)
    p = Plan(base)
    plain, noops, lerobot = (p.data_settings(r) for r in ("plain", "noops", "lerobot"))
    assert "drop_noops" not in plain and "image_size" not in plain  # existing data keys unchanged
    assert noops["drop_noops"] is True and noops["image_size"] == 64
    assert lerobot["demos"] == {"source": "lerobot", "folder": str(tmp_path.resolve())}
    assert len({key_of(plain), key_of(noops), key_of(lerobot)}) == 3
    assert p.demos_input(lerobot["demos"]) == str(tmp_path.resolve())


# ------------------------------------------------------------------------------------------------ LeRobot datasets


def _demo_arrays(path, key="demo_0"):
    with h5py.File(path, "r") as f:
        g = f[f"data/{key}"]
        return {
            k: g[k][()]
            for k in (
                "actions",
                "obs/ee_pos",
                "obs/ee_ori",
                "obs/gripper_states",
                "obs/joint_states",
                "obs/agentview_rgb",
                "obs/eye_in_hand_rgb",
            )
        }


@pytest.fixture(scope="module")
def same_demos(tmp_path_factory):
    """Two tasks' demos written three ways by independent writers: official (after-action) and regenerated
    (before-action) HDF5 files, and the regenerated ones as the LeRobot builders store them."""
    root = tmp_path_factory.mktemp("same")
    files = {}
    for recorded in ("after", "before"):
        for task, seed in ((TASK, 11), (OTHER, 12)):
            files[recorded, task] = _demo_file(root / recorded, recorded, task=task, steps=(15, 13), seed=seed)
    return root, files


def _lerobot_episodes(files):
    from rdt.libero import suites

    language = {t.name: t.language for t in suites.tasks("libero_90")}
    return [
        (language[task] + ("." if task == OTHER else ""), _demo_arrays(files["before", task], k))
        for task in (TASK, OTHER)
        for k in ("demo_0", "demo_1")
    ]


@pytest.mark.parametrize("layout, dtype", [("lerobot", "video"), ("openpi", "image"), ("any4lerobot", "video")])
def test_lerobot_dataset_converts_to_the_samples_of_the_same_demos_in_hdf5(same_demos, tmp_path, layout, dtype):
    from lerobot_layout import write_dataset

    root, files = same_demos
    dataset = write_dataset(tmp_path / "ds", _lerobot_episodes(files), layout=layout, dtype=dtype)
    out = tmp_path / "lerobot.h5"
    assert cli.main(["convert", "--source", "lerobot", "--demos", str(dataset), "--out", str(out)]) == 0
    convert([str(root / "before")], tmp_path / "regen.h5", suite="libero_90")
    convert([str(root / "after")], tmp_path / "official.h5", suite="libero_90")
    attrs, eps = _read_episodes(out)
    _, regen = _read_episodes(tmp_path / "regen.h5")
    _, official = _read_episodes(tmp_path / "official.h5")
    assert attrs["source"] == f"lerobot:{layout}" and attrs["image_size"] == SIZE
    with_joints = layout == "any4lerobot"  # the one layout keeping joint positions
    np.testing.assert_array_equal(attrs["mask"], mapping.MASK if with_joints else mapping.EEF_MASK)
    assert json.loads(attrs["state_slots"]) == list(mapping.STATE_SLOTS if with_joints else mapping.EEF_STATE_SLOTS)
    assert [(e["attrs"]["task"], e["attrs"]["source_demo"]) for e in eps] == [
        (TASK, "episode_000000"),
        (TASK, "episode_000001"),
        (OTHER, "episode_000002"),
        (OTHER, "episode_000003"),
    ]
    assert all(e["attrs"]["obs_convention"] == mapping.OBS_BEFORE_ACTION for e in eps)
    eef = (mapping.MASK if with_joints else mapping.EEF_MASK) > 0
    for lr, rg, of in zip(eps, regen, official):
        # frames: exactly equal (lossless video / PNG), and to the official conversion from its second step on
        for slot in ("exterior", "right_wrist"):
            np.testing.assert_array_equal(lr[f"images/{slot}"], rg[f"images/{slot}"])
            np.testing.assert_array_equal(lr[f"images/{slot}"][1:], of[f"images/{slot}"])
        np.testing.assert_array_equal(lr["action"], rg["action"])  # float32 storage of the command
        np.testing.assert_array_equal(lr["action"][1:], of["action"])
        np.testing.assert_allclose(lr["libero_action"], rg["libero_action"], rtol=0, atol=1e-7)
        # state: eef position, rotation and gripper agree (the parquet stores float32); joint slots absent (0)
        np.testing.assert_allclose(lr["state"][:, eef], rg["state"][:, eef], rtol=0, atol=2e-6)
        np.testing.assert_allclose(lr["state"][1:, eef], of["state"][:, eef], rtol=0, atol=2e-6)
        assert not lr["state"][:, ~eef].any() and rg["state"][:, :7].any() and lr["state"][:, :7].any() == with_joints


def test_lerobot_frames_convention_suite_and_selection(same_demos, tmp_path):
    from lerobot_layout import write_dataset
    from rdt.libero import lerobot

    root, files = same_demos
    raw = write_dataset(tmp_path / "raw", _lerobot_episodes(files)[:2], dtype="image", upright=False)
    convert([str(root / "before")], tmp_path / "regen.h5", suite="libero_90", selectors=[TASK])
    _, regen = _read_episodes(tmp_path / "regen.h5")
    # a dataset of raw renders declares it (--frames rotated) and gets the one flip; without it, frames stay as stored
    lerobot.convert([str(raw)], tmp_path / "r.h5", frames="rotated", demos_per_task=1, image_size=16)
    _, eps = _read_episodes(tmp_path / "r.h5")
    assert len(eps) == 1
    np.testing.assert_array_equal(eps[0]["images/exterior"], mapping.resize(regen[0]["images/exterior"], 16))
    lerobot.convert([str(raw)], tmp_path / "u.h5")
    _, eps = _read_episodes(tmp_path / "u.h5")
    np.testing.assert_array_equal(np.rot90(eps[0]["images/exterior"], 2, axes=(1, 2)), regen[0]["images/exterior"])
    # instructions select the tasks; a suite without them is an error naming the dataset
    with pytest.raises(UserError, match="none of the"):
        lerobot.convert([str(raw)], tmp_path / "x.h5", suite="libero_object")
    with pytest.raises(UserError, match="match no known LIBERO layout"):
        info = json.loads((raw / "meta/info.json").read_text())
        info["features"].pop("observation.state")
        (raw / "meta/info.json").write_text(json.dumps(info))
        lerobot.convert([str(raw)], tmp_path / "x.h5")


def test_evaluation_feeds_only_the_state_slots_the_checkpoint_was_trained_with():
    from types import SimpleNamespace

    from rdt.evaluation.inputs import policy_inputs
    from rdt.evaluation.run import make_planner

    state = np.arange(1, 129, dtype=np.float32) * mapping.MASK
    obs = SimpleNamespace(images=np.zeros((2, 8, 8, 3), np.uint8), prev_images=None, state=state)
    _, _, states, state_mask = policy_inputs([obs])
    np.testing.assert_array_equal(states[0], state)  # default: every LIBERO slot
    np.testing.assert_array_equal(state_mask[0], mapping.MASK)
    _, _, states, state_mask = policy_inputs([obs], mapping.EEF_MASK)
    np.testing.assert_array_equal(state_mask[0], mapping.EEF_MASK)
    assert not states[0][:7].any() and np.array_equal(states[0][mapping.EEF_MASK > 0], state[mapping.EEF_MASK > 0])

    seen = {}

    class Fake:
        pipeline = {"state_slots": list(mapping.EEF_STATE_SLOTS)}

        def act(self, lang, images, valid, states, state_mask, noise_seeds=None):
            seen["mask"] = state_mask
            return np.zeros((len(states), 64, 128), np.float32)

    from rdt.libero.suites import select_tasks
    from rdt.libero.workers import Job

    job = Job(select_tasks("libero_90", [TASK])[0], 0)
    make_planner(Fake(), {TASK: None}, None, {"policy_s": 0.0, "policy_calls": 0})([(job, obs)])
    np.testing.assert_array_equal(seen["mask"][0], mapping.EEF_MASK)
