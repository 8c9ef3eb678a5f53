"""The 128-dim unified state/action vector of RDT (``configs/state_vec.py`` of the original code) and the
rotation conversions used to fill it.

Every robot's state and action are scattered into named slots of one 128-dim vector; slots a robot lacks are
zero and marked unavailable in a 0/1 mask. Single-arm robots use the ``right_`` slots; names without a side
prefix are aliases of the ``right_`` names. The 6D rotation is the first two *columns* of the rotation matrix,
flattened column by column: ``[R00, R10, R20, R01, R11, R21]``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

STATE_DIM = 128


def _build_layout() -> dict[str, int]:
    idx: dict[str, int] = {}
    for side, base in (("right", 0), ("left", 50)):
        for i in range(10):
            idx[f"{side}_arm_joint_{i}_pos"] = base + i
        for i in range(5):
            idx[f"{side}_gripper_joint_{i}_pos"] = base + 10 + i
        idx[f"{side}_gripper_open"] = base + 10
        for i in range(10):
            idx[f"{side}_arm_joint_{i}_vel"] = base + 15 + i
        for i in range(5):
            idx[f"{side}_gripper_joint_{i}_vel"] = base + 25 + i
        idx[f"{side}_gripper_open_vel"] = base + 25
        for j, axis in enumerate("xyz"):
            idx[f"{side}_eef_pos_{axis}"] = base + 30 + j
        for i in range(6):
            idx[f"{side}_eef_angle_{i}"] = base + 33 + i
        for j, axis in enumerate("xyz"):
            idx[f"{side}_eef_vel_{axis}"] = base + 39 + j
        for j, axis in enumerate(("roll", "pitch", "yaw")):
            idx[f"{side}_eef_angular_vel_{axis}"] = base + 42 + j
    idx["base_vel_x"], idx["base_vel_y"], idx["base_angular_vel"] = 100, 101, 102
    # un-prefixed aliases of the right-arm names
    for name in [n for n in idx if n.startswith("right_")]:
        idx[name[len("right_") :]] = idx[name]
    return idx


#: name -> index in the 128-dim vector (aliases included).
STATE_VEC_IDX: dict[str, int] = _build_layout()


def indices(names: Iterable[str]) -> list[int]:
    """Indices of the named slots; an unknown name is a KeyError naming it."""
    out = []
    for n in names:
        if n not in STATE_VEC_IDX:
            raise KeyError(f"unknown unified-vector slot {n!r}")
        out.append(STATE_VEC_IDX[n])
    return out


def scatter(values: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """(..., len(names)) -> (..., 128) with the values in the named slots and zeros elsewhere."""
    values = np.asarray(values)
    if values.shape[-1] != len(names):
        raise ValueError(f"expected last dim {len(names)} for slots {list(names)}, got shape {values.shape}")
    out = np.zeros(values.shape[:-1] + (STATE_DIM,), dtype=np.result_type(values.dtype, np.float32))
    out[..., indices(names)] = values
    return out


def gather(vec: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """(..., 128) -> (..., len(names)): the values of the named slots."""
    vec = np.asarray(vec)
    if vec.shape[-1] != STATE_DIM:
        raise ValueError(f"expected a unified vector with last dim {STATE_DIM}, got shape {vec.shape}")
    return vec[..., indices(names)]


def mask(names: Iterable[str]) -> np.ndarray:
    """(128,) float32 availability mask: 1 where a named slot is used."""
    m = np.zeros(STATE_DIM, dtype=np.float32)
    m[indices(names)] = 1.0
    return m


# ---------------------------------------------------------------------------------------------- rotations


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """Quaternions (..., 4) in xyzw order (robosuite/scipy convention) -> rotation matrices (..., 3, 3)."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    x, y, z, w = np.moveaxis(q, -1, 0)
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def matrix_to_quat(m: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) -> unit quaternions (..., 4) xyzw with w >= 0."""
    m = np.asarray(m, dtype=np.float64)
    batch = m.shape[:-2]
    m = m.reshape(-1, 3, 3)
    q = np.empty((m.shape[0], 4))
    for k, r in enumerate(m):
        tr = np.trace(r)
        if tr > 0:
            s = np.sqrt(tr + 1.0) * 2
            q[k] = [(r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s, 0.25 * s]
        elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
            s = np.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2]) * 2
            q[k] = [0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s, (r[2, 1] - r[1, 2]) / s]
        elif r[1, 1] > r[2, 2]:
            s = np.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2]) * 2
            q[k] = [(r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s, (r[0, 2] - r[2, 0]) / s]
        else:
            s = np.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1]) * 2
            q[k] = [(r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s, (r[1, 0] - r[0, 1]) / s]
    q *= np.where(q[:, 3:4] < 0, -1.0, 1.0)
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    return q.reshape(batch + (4,))


def axisangle_to_matrix(v: np.ndarray) -> np.ndarray:
    """Axis-angle vectors (..., 3) (direction = axis, norm = angle in rad) -> rotation matrices (..., 3, 3)."""
    v = np.asarray(v, dtype=np.float64)
    theta = np.linalg.norm(v, axis=-1, keepdims=True)
    axis = np.where(theta > 1e-12, v / np.maximum(theta, 1e-12), np.array([1.0, 0.0, 0.0]))
    x, y, z = np.moveaxis(axis, -1, 0)
    zero = np.zeros_like(x)
    k = np.stack([np.stack([zero, -z, y], -1), np.stack([z, zero, -x], -1), np.stack([-y, x, zero], -1)], -2)
    th = theta[..., None]
    eye = np.broadcast_to(np.eye(3), k.shape)
    return eye + np.sin(th) * k + (1 - np.cos(th)) * (k @ k)


def matrix_to_axisangle(m: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) -> axis-angle (..., 3), angle in [0, pi]."""
    q = matrix_to_quat(m)
    return quat_to_axisangle(q)


def quat_to_axisangle(q: np.ndarray) -> np.ndarray:
    """Quaternions (..., 4) xyzw -> axis-angle (..., 3); same result as robosuite's ``quat2axisangle``."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w = np.clip(q[..., 3], -1.0, 1.0)
    den = np.sqrt(np.maximum(1.0 - w * w, 0.0))
    angle = 2.0 * np.arccos(w)
    scale = np.where(den > 1e-10, angle / np.maximum(den, 1e-10), 0.0)
    return q[..., :3] * scale[..., None]


def matrix_to_ortho6d(m: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) -> 6D (..., 6) = first two columns, column by column."""
    m = np.asarray(m)
    return np.concatenate([m[..., :, 0], m[..., :, 1]], axis=-1)


def ortho6d_to_matrix(d6: np.ndarray) -> np.ndarray:
    """6D (..., 6) -> rotation matrices (..., 3, 3) by Gram-Schmidt
    (x = norm(a1), z = norm(x cross a2), y = z cross x)."""
    d6 = np.asarray(d6, dtype=np.float64)
    a1, a2 = d6[..., :3], d6[..., 3:]
    x = a1 / np.linalg.norm(a1, axis=-1, keepdims=True)
    z = np.cross(x, a2)
    z = z / np.linalg.norm(z, axis=-1, keepdims=True)
    y = np.cross(z, x)
    return np.stack([x, y, z], axis=-1)
