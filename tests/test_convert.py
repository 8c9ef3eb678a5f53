"""`convert`: official-layout LIBERO demo files (written independently by tests/official_layout.py) -> training HDF5."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from official_layout import write_demo_file
from rdt import cli, statevec
from rdt.data import TRAIN_FORMAT
from rdt.errors import UserError
from rdt.libero import mapping
from rdt.libero.convert import convert

MICROWAVE = "KITCHEN_SCENE7_open_the_microwave"
BOWL = "KITCHEN_SCENE7_put_the_white_bowl_on_the_plate"
DRAWER = "KITCHEN_SCENE10_close_the_top_drawer_of_the_cabinet"
SIZE = 32


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    """Three libero_90 demo files; the microwave file has 12 demos with demo_1 too short (5 steps -> 4)."""
    root = tmp_path_factory.mktemp("demos")
    write_demo_file(
        root / f"{MICROWAVE}_demo.hdf5",
        MICROWAVE,
        "open the microwave, please",
        [14, 5] + [11 + i for i in range(10)],
        seed=1,
        image_size=SIZE,
    )
    write_demo_file(root / f"{BOWL}_demo.hdf5", BOWL, None, [16, 12], seed=2, image_size=SIZE)
    sub = root / "more"
    sub.mkdir()
    write_demo_file(
        sub / f"{DRAWER}_demo.hdf5", DRAWER, "close the top drawer of the cabinet", [13], seed=3, image_size=SIZE
    )
    return root


@pytest.fixture(scope="module")
def converted(demos, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "data.h5"
    summary = convert([str(demos)], out, suite="libero_90", selectors=["KITCHEN_SCENE7_*"])
    return out, summary


def _episodes(path):
    with h5py.File(path, "r") as f:
        return [(dict(f["episodes"][n].attrs)) for n in sorted(f["episodes"])]


def test_values_equal_direct_mapping_and_images_are_upright(demos, converted):
    out, _ = converted
    with h5py.File(demos / f"{MICROWAVE}_demo.hdf5", "r") as src, h5py.File(out, "r") as f:
        assert f.attrs["format"] == TRAIN_FORMAT
        assert f.attrs["control_frequency"] == 20 and f.attrs["image_size"] == SIZE
        assert json.loads(f.attrs["cameras"]) == {
            "exterior": "agentview",
            "right_wrist": "eye_in_hand",
            "left_wrist": None,
        }
        np.testing.assert_array_equal(f.attrs["mask"], mapping.MASK)
        ep = f["episodes/000000"]
        assert ep.attrs["task"] == MICROWAVE and ep.attrs["source_demo"] == "demo_0"
        assert ep.attrs["instruction"] == "open the microwave"  # the benchmark's wording, as in evaluation
        assert ep.attrs["source_instruction"] == "open the microwave, please"  # the file's own (provenance)
        d = src["data/demo_0"]
        expected_state = mapping.state_from_demo_obs(
            d["obs/joint_states"][()], d["obs/gripper_states"][()], d["obs/ee_pos"][()], d["obs/ee_ori"][()]
        )
        # demo obs[j] is recorded after actions[j]: training step t pairs obs[t] with actions[t+1]
        np.testing.assert_array_equal(ep["state"][()], expected_state[:-1].astype(np.float32))
        np.testing.assert_array_equal(ep["action"][()], mapping.action_to_unified(d["actions"][1:]).astype(np.float32))
        np.testing.assert_array_equal(ep["libero_action"][()], d["actions"][1:])
        assert ep["state"].dtype == np.float32 and ep["state"].shape == (13, 128) and ep.attrs["num_steps"] == 13
        # joint positions land in the right-arm joint slots unchanged (up to float32)
        np.testing.assert_allclose(ep["state"][:, :7], d["obs/joint_states"][:-1], rtol=1e-6)
        for slot, key in (("exterior", "agentview_rgb"), ("right_wrist", "eye_in_hand_rgb")):
            raw = d[f"obs/{key}"][()]
            frames = ep[f"images/{slot}"]
            assert frames.shape == (13, SIZE, SIZE, 3) and frames.chunks == (1, SIZE, SIZE, 3)
            assert frames.dtype == np.uint8 and frames.compression == "gzip"
            # upright = the raw frame rotated by 180 degrees: pixel (0,0) is the raw bottom-right pixel
            np.testing.assert_array_equal(frames[3], np.rot90(raw[3], 2))
            assert not np.array_equal(frames[3], raw[3])


def test_state_action_round_trip(converted):
    out, _ = converted
    with h5py.File(out, "r") as f:
        for name in f["episodes"]:
            ep = f["episodes"][name]
            back = mapping.action_from_unified(ep["action"][()])
            raw = ep["libero_action"][()]
            np.testing.assert_allclose(back, raw, rtol=0, atol=1e-6)  # float32 storage rounding
            np.testing.assert_array_equal(back[:, 6], raw[:, 6])  # gripper -1/+1 exactly
            np.testing.assert_array_equal(mapping.action_from_unified(mapping.action_to_unified(raw)), raw)
            rot = statevec.ortho6d_to_matrix(statevec.gather(ep["state"][()], mapping.STATE_SLOTS[11:]))
            np.testing.assert_allclose(rot @ np.swapaxes(rot, -1, -2), np.broadcast_to(np.eye(3), rot.shape), atol=1e-5)


def test_selection_order_short_demos_and_fallback_instruction(demos, converted, capsys, tmp_path):
    out, summary = converted
    eps = _episodes(out)
    assert [e["task"] for e in eps] == [MICROWAVE] * 11 + [BOWL] * 2  # pattern: SCENE7 only
    # numeric demo order (demo_10 after demo_9), the short demo_1 skipped and reported
    assert [e["source_demo"] for e in eps[:11]] == ["demo_0"] + [f"demo_{i}" for i in range(2, 12)]
    assert summary["tasks"][MICROWAVE]["skipped"] == ["demo_1"]
    assert summary["tasks"][MICROWAVE]["steps"] == 13 + sum(10 + i for i in range(10))  # one step per demo fewer
    assert min(e["num_steps"] for e in eps) >= 10
    assert eps[-1]["instruction"] == "put the white bowl on the plate"  # no language_instruction: suite table

    small = tmp_path / "small.h5"
    summary = convert([str(demos)], small, suite="libero_90", selectors=[MICROWAVE, "0"], demos_per_task=3)
    assert "demo_1: 4 training steps < --min-steps 10" in capsys.readouterr().out
    eps = _episodes(small)
    assert [(e["task"], e["source_demo"]) for e in eps] == [(DRAWER, "demo_0")] + [
        (MICROWAVE, d) for d in ("demo_0", "demo_2", "demo_3")
    ]
    assert summary["episodes"] == 4


def test_cli_infers_suite_and_prints_summary(demos, tmp_path, capsys):
    out = tmp_path / "d.h5"
    assert cli.main(["convert", "--demos", str(demos / "more" / f"{DRAWER}_demo.hdf5"), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert DRAWER in text and "1 episodes, 12 steps" in text
    assert _episodes(out)[0]["suite"] == "libero_90"


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing", ["data/demo_0/obs/ee_pos", "missing dataset"]),
        ("shape", ["data/demo_0/obs/joint_states", "(T,7)"]),
        ("dtype", ["data/demo_0/obs/agentview_rgb", "uint8"]),
        ("not_hdf5", ["not a readable HDF5 file"]),
        ("truncated", ["not a readable HDF5 file", "truncated"]),
    ],
)
def test_bad_files_give_clear_errors(tmp_path, case, expected):
    path = tmp_path / f"{DRAWER}_demo.hdf5"
    if case == "missing":
        write_demo_file(path, DRAWER, "x", [12], drop=("obs/ee_pos",), image_size=SIZE)
    elif case == "shape":
        write_demo_file(path, DRAWER, "x", [12], replace={"obs/joint_states": np.zeros((12, 6))}, image_size=SIZE)
    elif case == "dtype":
        write_demo_file(
            path,
            DRAWER,
            "x",
            [12],
            image_size=SIZE,
            replace={"obs/agentview_rgb": np.zeros((12, SIZE, SIZE, 3), np.float32)},
        )
    elif case == "truncated":  # e.g. an interrupted download
        write_demo_file(path, DRAWER, "x", [12, 12], image_size=SIZE)
        with open(path, "r+b") as f:
            f.truncate(path.stat().st_size // 2)
    else:
        path.write_bytes(b"this is not an HDF5 file\n" * 10)
    out = tmp_path / "out.h5"
    with pytest.raises(UserError) as err:
        convert([str(path)], out)
    for text in expected + [str(path)]:
        assert text in str(err.value)
    assert not out.exists() and not list(tmp_path.glob(".out.h5*"))  # nothing half-written left behind
    assert cli.main(["convert", "--demos", str(path), "--out", str(out)]) == 2


def test_no_matching_task_and_all_short(demos, tmp_path):
    with pytest.raises(UserError, match="LIVING_ROOM_SCENE9"):
        convert([str(demos)], tmp_path / "x.h5", suite="libero_90", selectors=["LIVING_ROOM_SCENE9_*"])
    with pytest.raises(UserError, match="none of the 1 selected task"):
        convert([str(demos)], tmp_path / "x.h5", suite="libero_90", selectors=["40"])
    with pytest.raises(UserError, match="no usable demo"):
        convert([str(demos / "more")], tmp_path / "x.h5", min_steps=100)
    with pytest.raises(UserError, match="no such file"):
        convert([str(tmp_path / "nowhere")], tmp_path / "x.h5")
