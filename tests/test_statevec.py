"""The unified 128-dim layout (RDT configs/state_vec.py), rotation conversions, and the LIBERO mapping."""

from __future__ import annotations

import numpy as np
import pytest

from rdt import statevec
from rdt.libero import mapping

RNG = np.random.default_rng(0)


def _expected_layout() -> dict[str, int]:
    """The table of RDT_FACTS §4.2, written out range by range."""
    exp: dict[str, int] = {}
    for side, base in (("right", 0), ("left", 50)):
        exp.update({f"{side}_arm_joint_{i}_pos": base + i for i in range(10)})
        exp.update({f"{side}_gripper_joint_{i}_pos": base + 10 + i for i in range(5)})
        exp[f"{side}_gripper_open"] = base + 10
        exp.update({f"{side}_arm_joint_{i}_vel": base + 15 + i for i in range(10)})
        exp.update({f"{side}_gripper_joint_{i}_vel": base + 25 + i for i in range(5)})
        exp[f"{side}_gripper_open_vel"] = base + 25
        exp.update({f"{side}_eef_pos_{a}": base + 30 + j for j, a in enumerate("xyz")})
        exp.update({f"{side}_eef_angle_{i}": base + 33 + i for i in range(6)})
        exp.update({f"{side}_eef_vel_{a}": base + 39 + j for j, a in enumerate("xyz")})
        exp.update({f"{side}_eef_angular_vel_{a}": base + 42 + j for j, a in enumerate(("roll", "pitch", "yaw"))})
    exp.update({"base_vel_x": 100, "base_vel_y": 101, "base_angular_vel": 102})
    exp.update({name[len("right_") :]: i for name, i in list(exp.items()) if name.startswith("right_")})
    return exp


def test_layout_names_and_aliases():
    assert statevec.STATE_DIM == 128
    assert statevec.STATE_VEC_IDX == _expected_layout()
    assert statevec.STATE_VEC_IDX["gripper_open"] == statevec.STATE_VEC_IDX["right_gripper_joint_0_pos"] == 10
    assert statevec.STATE_VEC_IDX["eef_angle_5"] == 38 and statevec.STATE_VEC_IDX["left_eef_angle_0"] == 83
    used = set(statevec.STATE_VEC_IDX.values())
    reserved = set(range(45, 50)) | set(range(95, 100)) | set(range(103, 128))
    assert used == set(range(128)) - reserved
    with pytest.raises(KeyError, match="right_arm_joint_10_pos"):
        statevec.indices(["right_arm_joint_10_pos"])


def test_scatter_gather_mask():
    names = ["eef_pos_x", "left_arm_joint_3_pos", "base_angular_vel"]
    vals = RNG.normal(size=(4, 3))
    vec = statevec.scatter(vals, names)
    assert vec.shape == (4, 128) and np.count_nonzero(vec[:, [30, 53, 102]]) == 12
    assert np.count_nonzero(np.delete(vec, [30, 53, 102], axis=1)) == 0
    np.testing.assert_allclose(statevec.gather(vec, names), vals, rtol=1e-6)
    m = statevec.mask(names)
    assert m.dtype == np.float32 and m.sum() == 3 and m[[30, 53, 102]].tolist() == [1, 1, 1]


def _random_rotations(n: int) -> np.ndarray:
    q = RNG.normal(size=(n, 4))
    return statevec.quat_to_matrix(q / np.linalg.norm(q, axis=-1, keepdims=True))


def test_6d_round_trip_and_convention():
    rots = _random_rotations(50)
    assert np.allclose(rots @ np.swapaxes(rots, -1, -2), np.eye(3), atol=1e-12)
    d6 = statevec.matrix_to_ortho6d(rots)
    assert d6.shape == (50, 6)
    np.testing.assert_allclose(d6[:, :3], rots[:, :, 0])  # first column, then second
    np.testing.assert_allclose(d6[:, 3:], rots[:, :, 1])
    np.testing.assert_allclose(statevec.ortho6d_to_matrix(d6), rots, atol=1e-12)
    # Gram-Schmidt recovers a rotation from a perturbed, unnormalised 6D vector
    noisy = statevec.ortho6d_to_matrix(d6 * 3.0 + RNG.normal(scale=1e-3, size=d6.shape))
    assert np.allclose(np.linalg.det(noisy), 1.0) and np.allclose(noisy, rots, atol=1e-2)


def test_quaternion_axis_angle_matrix_agree():
    # 90 degrees about z: known matrix and quaternion (xyzw)
    q = np.array([0.0, 0.0, np.sin(np.pi / 4), np.cos(np.pi / 4)])
    rz = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(statevec.quat_to_matrix(q), rz, atol=1e-12)
    np.testing.assert_allclose(statevec.quat_to_axisangle(q), [0, 0, np.pi / 2], atol=1e-12)
    np.testing.assert_allclose(statevec.axisangle_to_matrix(np.array([0, 0, np.pi / 2])), rz, atol=1e-12)
    rots = _random_rotations(50)
    quats = statevec.matrix_to_quat(rots)
    assert np.all(quats[:, 3] >= 0)
    np.testing.assert_allclose(statevec.quat_to_matrix(quats), rots, atol=1e-10)
    aa = statevec.matrix_to_axisangle(rots)
    np.testing.assert_allclose(aa, statevec.quat_to_axisangle(quats), atol=1e-10)
    np.testing.assert_allclose(statevec.axisangle_to_matrix(aa), rots, atol=1e-10)
    assert np.all(np.linalg.norm(aa, axis=-1) <= np.pi + 1e-12)
    np.testing.assert_allclose(statevec.axisangle_to_matrix(np.zeros(3)), np.eye(3))
    # -q is the same rotation
    np.testing.assert_allclose(statevec.quat_to_matrix(-quats), rots, atol=1e-10)


def test_libero_action_round_trip_is_exact():
    actions = np.concatenate([RNG.uniform(-1, 1, size=(200, 6)), RNG.choice([-1.0, 1.0], size=(200, 1))], axis=1)
    unified = mapping.action_to_unified(actions)
    assert unified.shape == (200, 128)
    assert np.array_equal(mapping.action_from_unified(unified), actions)
    idx = statevec.indices(
        ["eef_vel_x", "eef_vel_y", "eef_vel_z", "eef_angular_vel_roll", "eef_angular_vel_pitch", "eef_angular_vel_yaw"]
    )
    assert np.array_equal(unified[:, idx], actions[:, :6])
    # gripper: -1 (open) -> right_gripper_open 1, +1 (close) -> 0
    assert np.array_equal(unified[:, 10], (1 - actions[:, 6]) / 2)
    assert np.all(mapping.MASK[idx] == 1) and mapping.MASK[10] == 1 and mapping.MASK[50:].sum() == 0


def test_libero_state_uses_6d_of_the_end_effector_rotation():
    rots = _random_rotations(5)
    state = mapping.unified_state(
        RNG.normal(size=(5, 7)), np.tile([0.02, -0.02], (5, 1)), RNG.normal(size=(5, 3)), rots
    )
    d6 = statevec.gather(state, [f"eef_angle_{i}" for i in range(6)])
    np.testing.assert_allclose(statevec.ortho6d_to_matrix(d6), rots, atol=1e-6)
    np.testing.assert_allclose(state[:, 10], 0.5, rtol=1e-6)  # 4 cm of 8 cm open


def test_upright_flip():
    img = np.arange(2 * 4 * 5 * 3, dtype=np.uint8).reshape(2, 4, 5, 3)
    up = mapping.upright(img)
    assert up.shape == img.shape and up.flags["C_CONTIGUOUS"]
    assert np.array_equal(up[0, 0, 0], img[0, 3, 4]) and np.array_equal(up[1, 3, 4], img[1, 0, 0])
    assert np.array_equal(mapping.upright(up), img)  # 180 degrees twice = identity
    assert np.array_equal(up, np.rot90(img, 2, axes=(1, 2)))
