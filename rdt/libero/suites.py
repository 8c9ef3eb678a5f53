"""LIBERO suite facts, in one place: task lists, evaluation step limits, settle steps, control frequency,
and the selection of tasks by name, index or pattern."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from rdt.errors import UserError
from rdt.libero.tasks import TASKS

CONTROL_FREQUENCY_HZ = 20  # robosuite control_freq used by LIBERO demos and environments
SETTLE_STEPS = 10  # no-op steps after set_init_state before the policy acts (num_steps_wait)
NOOP_ACTION = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0)  # zero motion, gripper open (-1 = open, +1 = close)
INIT_STATES_PER_TASK = 50
DEMO_CAMERA_SIZE = 128  # official demo files store 128x128 frames; evaluation's default size
DEMO_DROP_FIRST_STEPS = 5  # create_dataset.py drops the first 5 steps ("force sensor is not stable")

#: max policy steps per episode in the published evaluations (OpenVLA / openpi), excluding the settle steps.
MAX_STEPS = {
    "libero_spatial": 220,
    "libero_object": 280,
    "libero_goal": 300,
    "libero_10": 520,
    "libero_90": 400,
}


@dataclass(frozen=True)
class Task:
    suite: str
    index: int
    name: str
    language: str

    @property
    def max_steps(self) -> int:
        return MAX_STEPS[self.suite]


def suite_names() -> list[str]:
    return list(TASKS)


def check_suite(suite: str) -> None:
    if suite not in TASKS:
        raise UserError(f"unknown LIBERO suite {suite!r}; expected one of {', '.join(TASKS)}")


def tasks(suite: str) -> list[Task]:
    check_suite(suite)
    return [Task(suite, i, name, lang) for i, (name, lang) in enumerate(TASKS[suite])]


def select_tasks(suite: str, selectors: list[str] | None = None) -> list[Task]:
    """Tasks of ``suite`` chosen by selectors, in suite order without repeats.

    A selector is a task name, a task index (``"3"``), a shell pattern (``"KITCHEN_SCENE7_*"``) or ``"all"``.
    ``None`` or an empty list means all tasks. A selector that matches nothing is an error naming it.
    """
    all_tasks = tasks(suite)
    if not selectors or selectors == ["all"]:
        return all_tasks
    chosen: set[int] = set()
    for sel in selectors:
        sel = str(sel)
        if sel.isdigit():
            i = int(sel)
            if not 0 <= i < len(all_tasks):
                raise UserError(f"task index {i} is out of range for suite {suite!r} (0..{len(all_tasks) - 1})")
            chosen.add(i)
            continue
        hits = [t.index for t in all_tasks if t.name == sel or fnmatch.fnmatchcase(t.name, sel)]
        if not hits:
            raise UserError(
                f"no task of suite {suite!r} matches {sel!r}; task names look like "
                f"{all_tasks[0].name!r} (a name, an index, a pattern such as 'KITCHEN_SCENE7_*' or 'all')"
            )
        chosen.update(hits)
    return [t for t in all_tasks if t.index in chosen]
