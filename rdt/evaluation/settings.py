"""The settings of one evaluation (or one open-loop replay, rdt.replay) and their checks.

A :class:`Settings` holds its tasks by name (resolved once from the request's selectors by the command);
:meth:`Settings.selected_tasks` is the one way back to the suite's tasks. :func:`check_horizon` is the one check of
an execution horizon (the command's flags before the model loads, against the checkpoint's chunk after it, and
:func:`rdt.evaluation.run.evaluate` itself); :func:`check_episodes` the one check of the episode count. The
evaluation's settings document and flags (rdt.evaluation.config) are checked with them.
"""

from __future__ import annotations

from dataclasses import dataclass

from rdt.errors import UserError
from rdt.libero import suites
from rdt.model.config import PRED_HORIZON


@dataclass(frozen=True)
class Settings:
    """What one evaluation runs; recorded in summary.json ``settings`` (``asdict``), and the outcome-deciding ones
    in every record's key (rdt.evaluation.ledger.OUTCOME_SETTINGS). ``horizon`` 0 is a replay's open loop."""

    suite: str
    tasks: tuple[str, ...]
    episodes: int
    horizon: int
    max_steps: int
    envs: int
    seed: int
    camera_size: int
    videos_per_task: int

    def selected_tasks(self) -> list[suites.Task]:
        """The suite's tasks named by ``tasks``, in suite order (an unknown name is an error naming it)."""
        return suites.select_tasks(self.suite, list(self.tasks))


def check_horizon(horizon: int, chunk: int = PRED_HORIZON, what: str = "--horizon") -> None:
    """An execution horizon executes 1..chunk actions of each predicted chunk. ``what`` names the value in the
    error: the flag, or the settings document's key (rdt.evaluation.config)."""
    if not 1 <= horizon <= chunk:
        raise UserError(
            f"{what} {horizon}: the execution horizon must be between 1 and the predicted chunk length {chunk}"
        )


def check_episodes(episodes: int, what: str = "--episodes") -> None:
    """Episode i of a task starts from its init state i: at most INIT_STATES_PER_TASK episodes per task."""
    if not 1 <= episodes <= suites.INIT_STATES_PER_TASK:
        raise UserError(
            f"{what} {episodes}: each task has {suites.INIT_STATES_PER_TASK} init states and "
            f"episode i uses init state i, so 1..{suites.INIT_STATES_PER_TASK} episodes are possible"
        )
