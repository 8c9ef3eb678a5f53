"""What the scripted expert (rdt.libero.expert_policy) steers by: the task's BDDL goal and where its objects are.

:func:`task_goal` reads the single ``(On A B)`` or ``(In A B)`` goal the expert solves; :class:`Scene` gives, in
the running simulation, the pose of object A, where it must end (a region site or object B), the height of its
support and the highest obstacle along the carry path, from body positions, region sites and the world-frame
bounding boxes of collision geometry (:func:`body_aabb`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rdt.errors import UserError
from rdt.libero import env as libero_env
from rdt.libero.suites import Task

SUPPORTED_GOALS = ("on", "in")


@dataclass(frozen=True)
class Goal:
    predicate: str  # "on" | "in"
    obj: str  # the object to move
    target: str  # an object name or a region site name


def task_goal(task: Task) -> Goal:
    """The task's BDDL goal as a :class:`Goal`; anything but one On/In predicate is a UserError."""
    path = libero_env.bddl_path(task)
    problem = libero_env.import_libero().bddl_utils.robosuite_parse_problem(str(path))
    goal = problem["goal_state"]
    shown = " ".join("(" + " ".join(map(str, g)) + ")" for g in goal)
    if len(goal) != 1 or len(goal[0]) != 3 or str(goal[0][0]).lower() not in SUPPORTED_GOALS:
        raise UserError(
            f"task {task.suite}/{task.name}: goal {shown} (in {path}) is not supported by the scripted "
            f"expert; it solves a single (On A B) or (In A B) goal"
        )
    pred, obj, target = (str(x) for x in goal[0])
    return Goal(pred.lower(), obj, target)


# ------------------------------------------------------------------------------------------------ scene geometry
def _subtree_bodies(model, root: int) -> list[int]:
    bodies = [root]
    for b in range(root + 1, model.nbody):
        if model.body_parentid[b] in bodies:
            bodies.append(b)
    return bodies


def body_aabb(env, body_id: int) -> tuple[np.ndarray, np.ndarray]:
    """World-frame axis-aligned box (lo (3,), hi (3,)) of the collision geoms of a body and its children."""
    model, data = env.env.sim.model._model, env.env.sim.data._data
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    bodies = set(_subtree_bodies(model, body_id))
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
    for g in range(model.ngeom):
        if model.geom_bodyid[g] not in bodies or (model.geom_contype[g] == 0 and model.geom_conaffinity[g] == 0):
            continue
        center, half = model.geom_aabb[g, :3], model.geom_aabb[g, 3:]
        corners = (center + signs * half) @ data.geom_xmat[g].reshape(3, 3).T + data.geom_xpos[g]  # (8, 3)
        lo, hi = np.minimum(lo, corners.min(0)), np.maximum(hi, corners.max(0))
    if not np.isfinite(lo).all():
        raise RuntimeError(f"body {body_id} has no collision geometry")
    return lo, hi


class Scene:
    """Poses of the goal's object and target in the running simulation."""

    def __init__(self, env, goal: Goal):
        inner = env.env
        self.env, self.goal = env, goal
        if goal.obj not in inner.objects_dict:
            raise UserError(f"goal object {goal.obj!r} is not a movable object of {inner.bddl_file_name}")
        self.obj_body = inner.obj_body_id[goal.obj]
        self.site = goal.target if goal.target in inner.object_sites_dict else None
        if self.site is None and goal.target not in inner.obj_body_id:
            raise UserError(f"goal target {goal.target!r} is neither an object nor a region of {inner.bddl_file_name}")
        parent = inner.object_sites_dict[self.site].parent_name if self.site else goal.target
        self.target_body = inner.obj_body_id.get(parent)
        self.obstacles = [b for n, b in inner.obj_body_id.items() if n != goal.obj]

    def obj(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(body position, aabb lo, aabb hi) of the object to move."""
        lo, hi = body_aabb(self.env, self.obj_body)
        return self.env.env.sim.data.body_xpos[self.obj_body].copy(), lo, hi

    def target_xy(self) -> np.ndarray:
        """Where the object's body position must end (xy): the region site or the target object's body."""
        data = self.env.env.sim.data
        if self.site:
            return data.get_site_xpos(self.site)[:2].copy()
        return data.body_xpos[self.target_body][:2].copy()

    def support_z(self) -> float:
        """Height at which the object's bottom is released (plus PLACE_ABOVE_M)."""
        inner = self.env.env
        if self.site and self.goal.predicate == "in":
            site = inner.object_sites_dict[self.site]
            bottom = inner.sim.data.get_site_xpos(self.site)[2] - float(site.size[2])
            if self.target_body is not None:
                bottom = max(bottom, body_aabb(self.env, self.target_body)[0][2])
            return bottom + 0.02
        if self.target_body is not None:
            return body_aabb(self.env, self.target_body)[1][2]
        return float(inner.sim.data.get_site_xpos(self.site)[2])

    def obstacle_top(self, start_xy: np.ndarray, radius: float) -> float:
        """Highest top of the other objects whose footprint comes within ``radius`` of the straight carry path
        from ``start_xy`` to the target (the target itself included)."""
        path = start_xy + np.linspace(0.0, 1.0, 25)[:, None] * (self.target_xy() - start_xy)  # (25, 2)
        top = self.support_z()
        for b in self.obstacles:
            lo, hi = body_aabb(self.env, b)
            gap = np.maximum(np.maximum(lo[:2] - path, path - hi[:2]), 0.0)  # (25, 2)
            if (np.linalg.norm(gap, axis=1) < radius).any():
                top = max(top, float(hi[2]))
        return top
