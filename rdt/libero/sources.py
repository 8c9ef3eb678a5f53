"""What the two demo sources of `convert` share: robomimic HDF5 demo files (rdt.libero.convert) and LeRobot
datasets (rdt.libero.lerobot) each select tasks (:class:`SourceTask`), choose demos per task into a
:class:`ConversionPlan`, and write them with it into the training HDF5 (rdt.data.writer); the plan fills the
summary that `convert` prints and returns.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rdt.data.writer import Episode, Header, Origin, write_training_file
from rdt.errors import UserError
from rdt.libero import mapping, suites

DEFAULT_MIN_STEPS = 10  # 0.5 s at 20 Hz; shorter recordings are not usable demonstrations


@dataclass
class SourceTask:
    """A selected task and its source: a demo file, or a LeRobot dataset folder."""

    task: suites.Task
    path: Path  # the demo file, or the dataset folder
    instruction: str  # the benchmark's instruction (what evaluation conditions on)
    source_instruction: str = ""  # the source's own wording, e.g. the file's problem_info (provenance)
    pairing: str = mapping.OBS_AFTER_ACTION  # the source's observation/action convention

    def origin(self, demo: str) -> Origin:
        """The training file's record of where demo ``demo`` of this task comes from."""
        return Origin(
            task=self.task.name,
            suite=self.task.suite,
            instruction=self.instruction,
            source_instruction=self.source_instruction,
            source_file=str(self.path),
            source_demo=demo,
            obs_convention=self.pairing,
        )


def check_counts(demos_per_task: int | None, min_steps: int) -> None:
    """``--demos-per-task`` (when given) and ``--min-steps`` are at least 1."""
    if demos_per_task is not None and demos_per_task < 1:
        raise UserError(f"--demos-per-task must be >= 1, got {demos_per_task}")
    if min_steps < 1:
        raise UserError(f"--min-steps must be >= 1, got {min_steps}")


@dataclass
class ConversionPlan:
    """The demos chosen per selected task (:meth:`add`, in suite order) and how they are converted; :meth:`write`
    writes them and returns the summary ``{"tasks": {task: {"episodes", "steps", "skipped", "noops",
    "pairing"}}, "episodes", "steps", "noops", "dataset_id"}``."""

    suite: str
    source: str  # "official" | "lerobot:<layout>" (the training file's `source`)
    drop_noops: bool
    min_steps: int  # for the error when no demo is long enough
    state_slots: list[str] = field(default_factory=lambda: list(mapping.STATE_SLOTS))
    tasks: list[tuple[SourceTask, list[str]]] = field(default_factory=list)
    summary: dict = field(default_factory=lambda: {"tasks": {}, "episodes": 0, "steps": 0, "noops": 0})

    def add(self, src: SourceTask, chosen: list[str], skipped: list[str]) -> None:
        """Plan the demos ``chosen`` of ``src`` (in order); ``skipped``: the too short ones met (reported)."""
        self.tasks.append((src, chosen))
        self.summary["tasks"][src.task.name] = {
            "episodes": 0,
            "steps": 0,
            "skipped": skipped,
            "noops": 0,
            "pairing": src.pairing,
        }

    def write(self, out_path: str | Path, episodes: Iterable[tuple[Origin, Episode]]) -> dict:
        """Write ``episodes`` (the planned demos read in plan order) into ``out_path``; the summary."""
        total = sum(len(chosen) for _, chosen in self.tasks)
        if total == 0:
            raise UserError(
                f"no usable demo in the {len(self.tasks)} selected source(s) (all shorter than --min-steps "
                f"{self.min_steps})"
            )
        sources = [src for src, _ in self.tasks]
        header = Header(
            suite=self.suite,
            tasks=[s.task.name for s in sources],
            sources=[str(s.path) for s in sources],
            obs_conventions={str(s.path): s.pairing for s in sources},
            source=self.source,
            drop_noops=self.drop_noops,
            state_slots=list(self.state_slots),
        )
        self.summary["dataset_id"] = write_training_file(out_path, self._counted(episodes), header, total)
        return self.summary

    def _counted(self, episodes: Iterable[tuple[Origin, Episode]]) -> Iterator[tuple[Origin, Episode]]:
        """``episodes``, each counted into its task's and the overall totals of the summary."""
        for origin, ep in episodes:
            n = ep.state.shape[0]
            task = self.summary["tasks"][origin.task]
            task["episodes"] += 1
            task["steps"] += n
            task["noops"] += ep.dropped_noops
            self.summary["episodes"] += 1
            self.summary["steps"] += n
            self.summary["noops"] += ep.dropped_noops
            yield origin, ep
