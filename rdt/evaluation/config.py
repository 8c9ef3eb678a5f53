"""The settings document of one evaluation job (``EVAL.yaml``, read by ``python -m rdt evaluate --config``): every
setting, its default, the one validation of them, and the task list resolved from them.

``EVAL.yaml`` is a flat mapping of the keys of :class:`EvalConfig`; the names are the workflow's ``eval:`` keys where
those exist (``suite``, ``tasks``, ``exec_horizons``, ``episodes_per_task``, ``max_steps``, ``seed``,
``videos_per_task``, ``weights``). The workflow writes one per evaluation (rule eval_config:
``<run folder>/eval/step-<S>/h<H>/eval-<key>.yaml``, from ``rdt.plan.Plan.eval_config``). Every flag of the command
overrides the document's value (:data:`FLAGS`), so a checkpoint made elsewhere is evaluated with flags only. An
unknown key, a value of the wrong type or out of bounds is a UserError naming the key and the file, or the flag.

The settings recorded in summary.json and in the records' outcome keys are :class:`rdt.evaluation.settings.Settings`
(:meth:`EvalConfig.settings`), unchanged by this document.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from rdt import layout
from rdt.errors import UserError
from rdt.evaluation.settings import Settings, check_episodes, check_horizon
from rdt.libero import suites
from rdt.train_config import check_tracker_installed
from rdt.utils.files import read_json, read_yaml

DEFAULT_EPISODES = 50  # per task: the published LIBERO evaluations
DEFAULT_CAMERA_SIZE = suites.DEMO_CAMERA_SIZE  # without pipeline.json image_size: the official demos' size
WEIGHTS = ("ema", "model")
REPORT_TO = ("none", "wandb")


@dataclass(frozen=True)
class EvalConfig:
    """One evaluation job: a checkpoint at one or more execution horizons. Defaults are the published LIBERO
    protocol; the only setting without a default is the checkpoint (and the horizons)."""

    # ---- the checkpoint
    checkpoint: str | None = None
    """Checkpoint folder (ours: config.json, model.safetensors, ema/, pipeline.json; or a released RDT folder /
    weights file / cached hub id). Required."""
    weights: str | None = None
    """``ema`` or ``model``; ``null``: ema when the checkpoint has them, else model."""
    text_encoder: str | None = None
    """Text encoder the checkpoint was trained with (``null``: from pipeline.json)."""
    vision_encoder: str | None = None
    """Vision encoder the checkpoint was trained with (``null``: from pipeline.json)."""
    control_frequency: int | None = None
    """Control frequency given to the model in Hz (``null``: from pipeline.json)."""
    lang: str | None = None
    """lang.safetensors with an embedding of every evaluated task's instruction; ``null``: the instructions are
    encoded with the checkpoint's text encoder into OUT/lang.safetensors."""
    stats: str | None = None
    """dataset_stat.json of the training data, for checkpoints made elsewhere (our exports carry theirs): states far
    outside its range are warned about and counted in summary.json (``null``: no check without pipeline.json's)."""

    # ---- what is evaluated (the workflow's eval keys)
    suite: str | None = None
    """LIBERO suite (``null``: the suite the checkpoint was trained on, from pipeline.json)."""
    tasks: list[str] | None = None
    """Task names, indices or shell patterns of the suite, or ``all`` (``null``: the tasks the checkpoint was
    trained on when ``suite`` is theirs, from pipeline.json; else all)."""
    exec_horizons: list[int] | None = None
    """Execution horizons: actions executed from each predicted 64-step chunk before re-planning (1..64); each is
    evaluated into OUT/h<H> when there are several, with the model loaded once. Required."""
    episodes_per_task: int = DEFAULT_EPISODES
    """Episodes per task; episode i starts from init state i (1..50; 50 is the LIBERO convention)."""
    max_steps: int | None = None
    """Policy steps per episode (``null``: the suite's published limit)."""
    seed: int = 0
    """env.seed of every episode and the policy's noise seed."""
    camera_size: int | None = None
    """Camera resolution in pixels (``null``: pipeline.json image_size, else 128)."""
    videos_per_task: int = 1
    """The first V episodes of each task are recorded as MP4 (0 = none)."""

    # ---- how it runs (never changes a result)
    envs: int = 1
    """Parallel simulator processes (the workflow: the job's threads, given as --envs)."""
    device: str | None = None
    """Torch device of the policy (``null``: cuda if available, else cpu)."""

    # ---- where success goes as evaluations finish (never changes a result)
    tensorboard: str | None = None
    """Folder of TensorBoard scalars success/H<h> and episodes/H<h> at the checkpoint's step (the workflow: the
    training's tensorboard/eval-<run>); skipped when tensorboard is missing; ``null``: none."""
    report_to: str = "none"
    """``wandb``: also log each horizon's success rate and episode count to Weights & Biases (the workflow: when the
    run's train.report_to is wandb), one W&B run per evaluated run and training, job_type evaluate, in the
    training's group, against the checkpoint step (metric ``checkpoint_step``); needs the wandb package and a login,
    or ``WANDB_MODE=offline``. ``none``: not."""
    wandb_project: str | None = None
    """W&B project (``null``: ``$WANDB_PROJECT``, else rdt-libero, as training's)."""
    wandb_group: str | None = None
    """W&B group (``null``: the training's W&B run id, ``<run>-<identity>`` from pipeline.json)."""
    run: str | None = None
    """Name of the evaluated run (the workflow's run or checkpoint name): the W&B run's name, and with the group
    its id (``null``: pipeline.json run, else the checkpoint folder's name)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def settings(self, tasks: list[suites.Task], horizon: int, pipeline: Mapping) -> Settings:
        """The settings of one horizon's evaluation (recorded in summary.json and the records' outcome keys), the
        defaults from the suite and the checkpoint's pipeline.json filled in; ``tasks`` as :func:`resolve_tasks`
        gives them."""
        return Settings(
            suite=self.suite,
            tasks=tuple(t.name for t in tasks),
            episodes=self.episodes_per_task,
            horizon=horizon,
            max_steps=self.max_steps or suites.MAX_STEPS[self.suite],
            envs=self.envs,
            seed=self.seed,
            camera_size=self.camera_size or int(pipeline.get("image_size") or DEFAULT_CAMERA_SIZE),
            videos_per_task=self.videos_per_task,
        )


#: the command's flag of each key (every key has one; a given flag overrides the document)
FLAGS = {
    "checkpoint": "--checkpoint",
    "weights": "--weights",
    "text_encoder": "--text-encoder",
    "vision_encoder": "--vision-encoder",
    "control_frequency": "--control-frequency",
    "lang": "--lang",
    "stats": "--stats",
    "suite": "--suite",
    "tasks": "--tasks",
    "exec_horizons": "--horizon",
    "episodes_per_task": "--episodes",
    "max_steps": "--max-steps",
    "seed": "--seed",
    "camera_size": "--camera-size",
    "videos_per_task": "--videos-per-task",
    "envs": "--envs",
    "device": "--device",
    "tensorboard": "--tensorboard",
    "report_to": "--report-to",
    "wandb_project": "--wandb-project",
    "wandb_group": "--wandb-group",
    "run": "--run",
}
#: the allowed values (``null`` is allowed where the type says so); the workflow schema's eval section repeats the
#: ones it shares (tests/test_schema_agrees.py)
CHOICES = {"suite": tuple(suites.suite_names()), "weights": WEIGHTS, "report_to": REPORT_TO}
POSITIVE = ("max_steps", "envs", "camera_size", "control_frequency")  # episodes_per_task: check_episodes
NON_NEGATIVE = ("videos_per_task",)
REQUIRED = ("checkpoint", "exec_horizons")
#: list keys: the type of their items (tasks may be written as indices: 3 is "3")
ITEMS = {"tasks": (str, int), "exec_horizons": (int,)}

_HINTS = typing.get_type_hints(EvalConfig)


class Where:
    """How an error names a key: the flag and its value when the command line gave it, else the file and key."""

    def __init__(self, source: str, flags: Mapping[str, Any]):
        self.source, self.flags = source, flags

    def __call__(self, key: str) -> str:
        return FLAGS[key] if key in self.flags else f"{self.source}: key {key!r} ({FLAGS[key]})"

    def error(self, key: str, value: Any, expected: str) -> UserError:
        return UserError(f"{self(key)} {_shown(value)}: expected {expected}")


def _shown(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, list) else repr(value) if value is None else str(value)


def _check_type(key: str, value: Any, where: Where) -> Any:
    """``value`` if it has the annotated type (a list's items converted: task indices to names), else an error."""
    hint = _HINTS[key]
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in allowed:
            return None
        raise where.error(key, value, f"a value of type {_type_name(hint)}")
    for kind in allowed:
        origin = typing.get_origin(kind)
        if origin is list and isinstance(value, list):
            items = ITEMS[key]
            if all(isinstance(v, items) and not isinstance(v, bool) for v in value):
                return [str(v) for v in value] if str in items else list(value)
        elif kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        elif kind is str and isinstance(value, str):
            return value
    raise where.error(key, value, f"type {_type_name(hint)}, not {type(value).__name__}")


def _type_name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def from_dict(
    values: Mapping[str, Any], source: str = "evaluation config", flags: Mapping[str, Any] = ()
) -> EvalConfig:
    """Validate a mapping of settings into an EvalConfig; unknown keys, wrong types or values are UserErrors naming
    the key and ``source`` (the file), or the flag for the keys in ``flags`` (those the command line gave)."""
    if not isinstance(values, Mapping):
        raise UserError(f"{source}: expected a mapping of evaluation settings, got {type(values).__name__}")
    where = Where(source, flags)
    known = {f.name for f in fields(EvalConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserError(
            f"{source}: unknown key(s) {', '.join(map(repr, unknown))}; known keys: {', '.join(sorted(known))}"
        )
    cfg = EvalConfig(**{k: _check_type(k, v, where) for k, v in values.items()})
    for key in REQUIRED:
        if getattr(cfg, key) is None:
            raise UserError(
                f"{source}: key {key!r} is required: set it in the settings document (--config FILE) or give "
                f"{FLAGS[key]}"
            )
    for key, choices in CHOICES.items():
        value = getattr(cfg, key)
        if value is not None and value not in choices:
            what = f"unknown LIBERO suite {value!r}; expected" if key == "suite" else "expected"  # check_suite's
            raise UserError(f"{where(key)} {value}: {what} one of {', '.join(choices)}")
    for key in POSITIVE:
        value = getattr(cfg, key)
        if value is not None and value < 1:
            raise where.error(key, value, "a positive integer")
    for key in NON_NEGATIVE:
        if getattr(cfg, key) < 0:
            raise where.error(key, getattr(cfg, key), "0 or more")
    if not cfg.exec_horizons:
        raise where.error("exec_horizons", cfg.exec_horizons, "at least one execution horizon")
    if len(set(cfg.exec_horizons)) != len(cfg.exec_horizons):
        raise where.error("exec_horizons", cfg.exec_horizons, "distinct execution horizons")
    for h in cfg.exec_horizons:
        check_horizon(h, what=where("exec_horizons"))
    check_episodes(cfg.episodes_per_task, what=where("episodes_per_task"))
    if cfg.tasks is not None and not cfg.tasks:
        raise where.error("tasks", cfg.tasks, "at least one task (or null: the trained tasks)")
    anyway = "summary.json and the TensorBoard scalars"
    check_tracker_installed(cfg.report_to, f"{where('report_to')} {cfg.report_to}", anyway)
    return cfg


def read(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping of a settings document, not yet validated (the command merges its flags into it first)."""
    values = read_yaml(path, "evaluation settings document not found")
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise UserError(f"{path}: expected a mapping of evaluation settings, got {type(values).__name__}")
    return values


def load(path: str | os.PathLike) -> EvalConfig:
    """Read and validate a settings document; relative paths in it are taken from the working directory."""
    return from_dict(read(path), source=str(path))


def dump(cfg: EvalConfig | Mapping[str, Any]) -> str:
    """The YAML text of an EvalConfig or of a mapping of its settings (the workflow's eval_config rule writes
    ``rdt.plan.Plan.eval_config`` with it); :func:`load` reads back the same settings."""
    return yaml.safe_dump(cfg.to_dict() if isinstance(cfg, EvalConfig) else dict(cfg), sort_keys=False)


def trained_suite_and_tasks(checkpoint: str, suite: str | None, tasks: list[str] | None) -> tuple[str, list[str]]:
    """``suite``/``tasks`` with their defaults: the suite and tasks the checkpoint's pipeline.json says it was
    trained on (the tasks only when the suite is that one; otherwise all tasks)."""
    try:
        trained = read_json(Path(checkpoint) / layout.PIPELINE_FILE)
    except UserError:  # none (a checkpoint made elsewhere) or unreadable: no defaults from it
        trained = {}
    if suite is None:
        suite = trained.get("suite")
        if not suite:
            raise UserError(
                f"--suite is not given and {checkpoint} has no pipeline.json naming the suite it was "
                "trained on (a checkpoint made elsewhere): pass --suite S [--tasks ...] (or suite: in --config)"
            )
    if tasks is None:
        tasks = list(trained.get("tasks") or ["all"]) if suite == trained.get("suite") else ["all"]
    return suite, tasks


def resolve_tasks(cfg: EvalConfig) -> tuple[EvalConfig, list[suites.Task]]:
    """The tasks, once: suite and tasks with their defaults from the checkpoint's pipeline.json, the selectors
    resolved to the suite's tasks (an unknown one is an error naming it); the config then names them."""
    suite, selectors = trained_suite_and_tasks(cfg.checkpoint, cfg.suite, cfg.tasks)
    tasks = suites.select_tasks(suite, selectors)
    return dataclasses.replace(cfg, suite=suite, tasks=[t.name for t in tasks]), tasks
