"""The scripted expert: a closed-loop pick-and-place policy for tasks whose goal is one ``(On A B)`` or ``(In A B)``.

It approaches above object A, descends, grasps, lifts, carries A above B, lowers it, releases and retreats,
steering by the simulator's object poses (rdt.libero.expert_scene) with OSC_POSE delta actions clipped to [-1, 1]
(gripper -1 open, +1 close). Its first DEMO_DROP_FIRST_STEPS actions are no-ops (the steps demo files drop).
"""

from __future__ import annotations

import numpy as np

from rdt.libero.expert_scene import Goal, Scene
from rdt.libero.suites import DEMO_DROP_FIRST_STEPS, NOOP_ACTION

# Controller constants (OSC_POSE: an action of 1 moves the position set-point 5 cm and the orientation 0.5 rad).
POS_GAIN = 10.0  # action per metre of position error
ROT_GAIN = 2.0  # action per radian of orientation error
REACHED_M = 0.008  # a waypoint counts as reached within this distance
HOVER_CLEARANCE_M = 0.10  # approach height above the object's top
CARRY_CLEARANCE_M = 0.06  # clearance of the object's bottom above the highest obstacle top while carrying
GRASP_DEPTH_M = 0.035  # fingertips at most this far below the object's top
RIM_GRASP_WIDTH_M = 0.07  # wider objects (bowls, plates) are grasped at the rim instead of the centre
RIM_INSET_M = 0.012  # fingertip centre this far inside the outer rim
PLACE_ABOVE_M = 0.01  # release with the object's bottom this high above the support
GRIPPER_STEPS = 12  # steps to close or open the gripper
RETREAT_M = 0.08
STALL_STEPS, STALL_M = 6, 0.002  # lowering ends when the eef moved less than STALL_M in STALL_STEPS steps


def _rotation_error(current: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Axis-angle (world frame) rotating matrix ``current`` onto ``target`` (both (3, 3))."""
    r = target @ current.T
    angle = np.arccos(np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0))
    if angle < 1e-6:
        return np.zeros(3)
    axis = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]]) / (2.0 * np.sin(angle))
    return axis * angle


class ScriptedExpert:
    """Closed-loop pick-and-place policy: ``act()`` -> (7,) action for the current simulator state.

    Phases: wait (no-ops) -> above -> descend -> grasp -> lift -> carry -> lower -> release -> retreat -> done."""

    def __init__(self, env, goal: Goal):
        self.env, self.scene = env, Scene(env, goal)
        self.phase, self.phase_steps = "wait", 0
        self.target_ori = self._eef()[1]
        self.hold_z = 0.0
        self.carry_bottom: float | None = None  # object bottom height while carrying, fixed at the lift
        self.recent_z: list[float] = []  # eef heights in the current phase (stall detection)

    def _eef(self) -> tuple[np.ndarray, np.ndarray]:
        site = self.env.env.robots[0].eef_site_id
        data = self.env.env.sim.data
        return data.site_xpos[site].copy(), data.site_xmat[site].reshape(3, 3).copy()

    def _goto(self, target: np.ndarray, gripper: float, max_speed: float = 1.0) -> tuple[np.ndarray, float]:
        pos, ori = self._eef()
        err = target - pos
        move = np.clip(POS_GAIN * err, -max_speed, max_speed)
        rot = np.clip(ROT_GAIN * _rotation_error(ori, self.target_ori), -1.0, 1.0)
        return np.concatenate([move, rot, [gripper]]), float(np.linalg.norm(err))

    def _next(self, phase: str) -> None:
        self.phase, self.phase_steps, self.recent_z = phase, 0, []

    def _grasp_point(self) -> np.ndarray:
        body, lo, hi = self.scene.obj()
        center = (lo + hi) / 2.0
        z = max(center[2], hi[2] - GRASP_DEPTH_M)
        if max(hi[0] - lo[0], hi[1] - lo[1]) <= RIM_GRASP_WIDTH_M:
            return np.array([center[0], center[1], z])
        # rim grasp: fingers close along world x, so put the fingertip centre on the rim at +y of the centre
        return np.array([center[0], hi[1] - RIM_INSET_M, hi[2] - 0.02])

    def act(self) -> np.ndarray:
        """The next OSC_POSE command (7,), from the current phase's controller."""
        self.phase_steps += 1
        ph = self.phase
        if ph == "wait":
            return self._wait()
        if ph in ("above", "descend"):
            return self._reach(ph)
        if ph == "grasp":
            return self._close_gripper()
        if ph in ("lift", "carry", "lower"):
            return self._transport(ph)
        if ph == "release":
            return self._open_gripper()
        if ph == "retreat":
            return self._retreat()
        return np.asarray(NOOP_ACTION, dtype=np.float64)

    def _wait(self) -> np.ndarray:
        """No-ops for the steps the demos drop, then on to ``above``."""
        if self.phase_steps >= DEMO_DROP_FIRST_STEPS:
            self._next("above")
        return np.asarray(NOOP_ACTION, dtype=np.float64)

    def _reach(self, ph: str) -> np.ndarray:
        """``above``: hover over the grasp point (rising first, then level); ``descend``: down onto it."""
        grasp = self._grasp_point()
        _, lo, hi = self.scene.obj()
        if ph == "above":
            target = grasp + np.array([0.0, 0.0, hi[2] - grasp[2] + HOVER_CLEARANCE_M])
            pos = self._eef()[0]
            if np.linalg.norm(pos[:2] - target[:2]) > 0.03:  # rise first, then travel level
                target[2] = max(target[2], pos[2])
        else:
            target = grasp
        action, dist = self._goto(target, -1.0)
        if dist < REACHED_M or self.phase_steps > 80:
            self._next("descend" if ph == "above" else "grasp")
        return action

    def _close_gripper(self) -> np.ndarray:
        """``grasp``: hold still and close for GRIPPER_STEPS, then ``lift``."""
        action, _ = self._goto(self._eef()[0], 1.0)
        action[:3] = 0.0
        if self.phase_steps >= GRIPPER_STEPS:
            self._next("lift")
        return action

    def _transport(self, ph: str) -> np.ndarray:
        """``lift`` clear of the obstacles, ``carry`` level over the target, ``lower`` onto its support (until
        there or stalled, i.e. resting on it already)."""
        body, lo, hi = self.scene.obj()
        pos = self._eef()[0]
        bottom_to_eef = pos[2] - lo[2]
        if self.carry_bottom is None:
            radius = 0.5 * float(np.max(hi[:2] - lo[:2])) + 0.02
            self.carry_bottom = self.scene.obstacle_top(body[:2], radius) + CARRY_CLEARANCE_M
        carry_bottom = self.carry_bottom
        goal_xy = pos[:2] + (self.scene.target_xy() - body[:2])
        if ph == "lift":
            target = np.array([pos[0], pos[1], carry_bottom + bottom_to_eef])
            nxt = "carry"
        elif ph == "carry":
            target = np.array([goal_xy[0], goal_xy[1], carry_bottom + bottom_to_eef])
            nxt = "lower"
        else:
            target = np.array([goal_xy[0], goal_xy[1], self.scene.support_z() + PLACE_ABOVE_M + bottom_to_eef])
            nxt = "release"
        action, dist = self._goto(target, 1.0, max_speed=1.0 if ph != "lower" else 0.5)
        self.recent_z.append(pos[2])
        stalled = (
            ph == "lower"
            and len(self.recent_z) > STALL_STEPS
            and abs(self.recent_z[-STALL_STEPS - 1] - pos[2]) < STALL_M
        )  # resting on the support already
        if dist < REACHED_M or stalled or self.phase_steps > 100:
            self._next(nxt)
        return action

    def _open_gripper(self) -> np.ndarray:
        """``release``: hold still and open for GRIPPER_STEPS, then ``retreat``."""
        action, _ = self._goto(self._eef()[0], -1.0)
        action[:3] = 0.0
        if self.phase_steps >= GRIPPER_STEPS:
            self.hold_z = self._eef()[0][2] + RETREAT_M
            self._next("retreat")
        return action

    def _retreat(self) -> np.ndarray:
        """``retreat``: straight up to RETREAT_M above the release, then ``done``."""
        pos = self._eef()[0]
        action, dist = self._goto(np.array([pos[0], pos[1], self.hold_z]), -1.0)
        if dist < REACHED_M or self.phase_steps > 40:
            self._next("done")
        return action
