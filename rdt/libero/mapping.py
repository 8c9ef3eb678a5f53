"""The LIBERO <-> RDT mapping, in one place, shared by conversion, training data and evaluation.

- images: LIBERO renders are rotated 180 degrees (OpenGL convention); :func:`upright` turns them upright.
  Cameras: agentview -> RDT's exterior slot, eye-in-hand -> right-wrist slot, left wrist absent.
- state (``delta_eef`` mapping): 7 joint positions, gripper opening in [0, 1], end-effector position (m) and
  rotation as 6D, into the right-arm slots of the 128-dim unified vector.
- action: LIBERO's 7-dim OSC_POSE command (delta position, delta axis-angle rotation, gripper -1 open / +1 close)
  into the end-effector velocity slots and ``right_gripper_open`` (1 = open). :func:`action_from_unified`
  inverts :func:`action_to_unified` exactly.
"""

from __future__ import annotations

import numpy as np

from rdt import statevec
from rdt.model.config import CAMERA_SLOTS

ACTION_SPACE = "delta_eef"  # the one mapping implemented; recorded in datasets and checkpoints

#: LIBERO's cameras (robosuite camera names), the one list conversion, demo writing and evaluation use
AGENTVIEW, EYE_IN_HAND = "agentview", "robot0_eye_in_hand"
#: RDT camera slot (rdt.model.config.CAMERA_SLOTS, in RDT order) -> LIBERO camera (demo file key, env observation
#: key); None = slot absent.
CAMERAS: dict[str, tuple[str, str] | None] = dict(
    zip(
        CAMERA_SLOTS,
        (
            ("agentview_rgb", f"{AGENTVIEW}_image"),  # exterior
            ("eye_in_hand_rgb", f"{EYE_IN_HAND}_image"),  # right wrist
            None,  # left wrist
        ),
    )
)

STATE_SLOTS = (
    [f"right_arm_joint_{i}_pos" for i in range(7)]
    + ["right_gripper_open"]
    + [f"right_eef_pos_{a}" for a in "xyz"]
    + [f"right_eef_angle_{i}" for i in range(6)]
)
ACTION_SLOTS = (
    [f"right_eef_vel_{a}" for a in "xyz"]
    + [f"right_eef_angular_vel_{a}" for a in ("roll", "pitch", "yaw")]
    + ["right_gripper_open"]
)
#: availability mask (128,): the union of the state and action slots.
MASK = np.maximum(statevec.mask(STATE_SLOTS), statevec.mask(ACTION_SLOTS))

#: LeRobot-format LIBERO datasets (openpi ``physical-intelligence/libero`` "state", LeRobot ``lerobot/libero_*``
#: "observation.state") hold an 8-dim state: end-effector position (3, m), end-effector rotation as axis-angle (3),
#: finger joint positions (2, robot0_gripper_qpos). No joint positions: the joint slots are absent.
LEROBOT_STATE_DIM = 8
EEF_STATE_SLOTS = STATE_SLOTS[7:]  # gripper opening, eef position, eef rotation 6D


def availability_mask(state_slots=None) -> np.ndarray:
    """(128,) mask of data whose state fills ``state_slots`` (None: STATE_SLOTS, i.e. :data:`MASK`) plus the
    action slots. Training files record their ``state_slots``, exports carry them into pipeline.json and
    evaluation feeds the policy only those (so a model trained without joint positions never sees them)."""
    return np.maximum(statevec.mask(STATE_SLOTS if state_slots is None else state_slots), statevec.mask(ACTION_SLOTS))


#: availability mask of a training file made from an 8-dim LeRobot state (no joint slots)
EEF_MASK = availability_mask(EEF_STATE_SLOTS)

#: how a source stores its frames: ``rotated`` = LIBERO's raw render (180 degrees, official and regenerated HDF5
#: files), ``upright`` = already turned (the published LeRobot LIBERO datasets). :func:`to_upright` applies
#: :func:`upright` only to the former.
FRAMES_ROTATED = "rotated"
FRAMES_UPRIGHT = "upright"
FRAME_CONVENTIONS = (FRAMES_ROTATED, FRAMES_UPRIGHT)

# Panda finger joints: q[0] in [0, 0.04], q[1] in [-0.04, 0]; opening = q[0] - q[1].
GRIPPER_MAX_OPENING_M = 0.08

#: where the arm's 7 joint positions sit in LIBERO's flattened MuJoCo state ``[time, qpos, qvel]`` (demo
#: ``states``, init states, ``env.get_sim_state()``): robosuite merges the arena, then the robot, then the objects,
#: so qpos starts with the arm joints (then the 2 finger joints). Checked in the simulator for libero_90,
#: libero_spatial and libero_10 (``robots[0]._ref_joint_pos_indexes == 0..6``; ``state[1:8] == robot0_joint_pos``).
SIM_STATE_ARM_JOINTS = slice(1, 8)

#: how a demo file pairs its observations with its actions (recorded per episode in the training file):
#: ``obs_after_action``: ``obs[j]`` was recorded AFTER ``actions[j]`` (official LIBERO ``create_dataset.py``), so
#: it is what the policy saw when choosing ``actions[j+1]``; ``obs_before_action``: ``obs[j]`` was recorded BEFORE
#: ``actions[j]`` (OpenVLA's regenerated files, LeRobot datasets), so it pairs with ``actions[j]``.
OBS_AFTER_ACTION = "obs_after_action"
OBS_BEFORE_ACTION = "obs_before_action"
OBS_CONVENTIONS = (OBS_AFTER_ACTION, OBS_BEFORE_ACTION)

#: a no-op command (OpenVLA's ``is_noop``, what the published LIBERO recipes drop): translation and rotation
#: together below this norm, gripper command equal to the previous kept command's.
NOOP_THRESHOLD = 1e-4


def upright(frames: np.ndarray) -> np.ndarray:
    """Rotate LIBERO renders by 180 degrees: (..., H, W, C) -> (..., H, W, C), contiguous.

    The ONE place where the image flip happens, for conversion and for evaluation alike."""
    frames = np.asarray(frames)
    if frames.ndim < 3 or frames.shape[-1] != 3:
        raise ValueError(f"expected image(s) of shape (..., H, W, 3), got {frames.shape}")
    return np.ascontiguousarray(frames[..., ::-1, ::-1, :])


def to_upright(frames: np.ndarray, convention: str) -> np.ndarray:
    """Frames stored in ``convention`` (FRAME_CONVENTIONS) -> upright frames; the flip is :func:`upright`'s."""
    if convention == FRAMES_ROTATED:
        return upright(frames)
    if convention == FRAMES_UPRIGHT:
        return np.ascontiguousarray(frames)
    raise ValueError(f"unknown frame convention {convention!r}; expected one of {FRAME_CONVENTIONS}")


def resize(frames: np.ndarray, size: int) -> np.ndarray:
    """(..., H, W, 3) uint8 frames -> (..., size, size, 3) uint8 (PIL's antialiased bicubic; a no-op at that size).

    Conversion uses it to bring every source to the training file's ``image_size``; evaluation renders at that
    size instead of resizing."""
    frames = np.asarray(frames)
    if frames.shape[-3:-1] == (size, size):
        return frames
    from PIL import Image

    flat = frames.reshape((-1,) + frames.shape[-3:])
    out = np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.Resampling.BICUBIC)) for im in flat])
    return out.reshape(frames.shape[:-3] + (size, size, 3))


def noop_mask(actions: np.ndarray) -> np.ndarray:
    """(T,7) LIBERO commands -> (T,) bool, True where the step is a no-op to drop: OpenVLA's ``is_noop`` applied in
    order against the previous KEPT command (a gripper change is never a no-op)."""
    a = np.asarray(actions, dtype=np.float64)
    drop = np.zeros(len(a), dtype=bool)
    prev = None
    for t in range(len(a)):
        still = np.linalg.norm(a[t, :6]) < NOOP_THRESHOLD
        drop[t] = still if prev is None else (still and a[t, 6] == prev[6])
        if not drop[t]:
            prev = a[t]
    return drop


def gripper_opening(gripper_qpos: np.ndarray) -> np.ndarray:
    """(..., 2) finger joint positions -> (...,) opening in [0, 1] (1 = fully open)."""
    q = np.asarray(gripper_qpos, dtype=np.float64)
    return np.clip((q[..., 0] - q[..., 1]) / GRIPPER_MAX_OPENING_M, 0.0, 1.0)


def unified_state(
    joint_pos: np.ndarray, gripper_qpos: np.ndarray, eef_pos: np.ndarray, eef_rotation: np.ndarray
) -> np.ndarray:
    """Robot state -> (..., 128) float32 unified state.

    joint_pos (..., 7) rad; gripper_qpos (..., 2) m; eef_pos (..., 3) m; eef_rotation (..., 3, 3) matrix."""
    values = np.concatenate(
        [
            np.asarray(joint_pos, dtype=np.float64),
            gripper_opening(gripper_qpos)[..., None],
            np.asarray(eef_pos, dtype=np.float64),
            statevec.matrix_to_ortho6d(np.asarray(eef_rotation, dtype=np.float64)),
        ],
        axis=-1,
    )
    return statevec.scatter(values, STATE_SLOTS).astype(np.float32)


def state_from_env_obs(obs: dict) -> np.ndarray:
    """A LIBERO environment observation dict -> (128,) unified state."""
    return unified_state(
        obs["robot0_joint_pos"],
        obs["robot0_gripper_qpos"],
        obs["robot0_eef_pos"],
        statevec.quat_to_matrix(obs["robot0_eef_quat"]),
    )


def state_from_demo_obs(
    joint_states: np.ndarray, gripper_states: np.ndarray, ee_pos: np.ndarray, ee_ori: np.ndarray
) -> np.ndarray:
    """Demo-file observations (``obs/joint_states``, ``gripper_states``, ``ee_pos``, ``ee_ori`` = axis-angle)
    -> (T, 128) unified states."""
    return unified_state(joint_states, gripper_states, ee_pos, statevec.axisangle_to_matrix(ee_ori))


def state_from_lerobot(state: np.ndarray, joint_pos: np.ndarray | None = None) -> np.ndarray:
    """LeRobot LIBERO states (T, 8) = eef position (3), axis-angle (3), gripper qpos (2) -> (T, 128) unified
    states: the same values as :func:`state_from_demo_obs`. Without ``joint_pos`` (T, 7) (most published datasets
    have none) the joint slots are 0 and absent (EEF_STATE_SLOTS)."""
    s = np.asarray(state, dtype=np.float64)
    if s.shape[-1] != LEROBOT_STATE_DIM:
        raise ValueError(f"expected LeRobot LIBERO states with last dim {LEROBOT_STATE_DIM}, got shape {s.shape}")
    joints = np.zeros(s.shape[:-1] + (7,)) if joint_pos is None else np.asarray(joint_pos, dtype=np.float64)
    full = unified_state(joints, s[..., 6:8], s[..., 0:3], statevec.axisangle_to_matrix(s[..., 3:6]))
    return full if joint_pos is not None else (full * statevec.mask(EEF_STATE_SLOTS)).astype(np.float32)


def action_to_unified(action: np.ndarray) -> np.ndarray:
    """LIBERO commands (..., 7) -> unified actions (..., 128) float64 (exactly invertible)."""
    a = np.asarray(action, dtype=np.float64)
    if a.shape[-1] != 7:
        raise ValueError(f"expected LIBERO actions with last dim 7, got shape {a.shape}")
    values = np.concatenate([a[..., :6], ((1.0 - a[..., 6]) / 2.0)[..., None]], axis=-1)
    return statevec.scatter(values, ACTION_SLOTS).astype(np.float64)


def action_from_unified(unified: np.ndarray) -> np.ndarray:
    """Unified actions (..., 128) -> LIBERO commands (..., 7) float64, gripper clipped to [-1, 1]."""
    v = statevec.gather(np.asarray(unified, dtype=np.float64), ACTION_SLOTS)
    gripper = np.clip(1.0 - 2.0 * v[..., 6], -1.0, 1.0)
    return np.concatenate([v[..., :6], gripper[..., None]], axis=-1)
