"""The checks the plan makes at parse time, before any job is planned: whatever would otherwise fail only after
earlier stages ran (or reach the user wrapped in Snakemake's InputFunctionException and a traceback) is a UserError
here, naming the key, the value and the expected form.

- target names (reserved folder names of ``results/``, duplicates, a name used twice);
- numbers that must fit together (effective batch over devices, the expert's attempts and the evaluation's
  episodes over a task's init states);
- task selections that name tasks of their suite;
- files and folders named in the config (demo folders, ``init_from``, evaluation-only checkpoints and their
  statistics), whatever is already in ``results/``.

The functions that look at files take the plan (``plan.local_path``, ``plan.checkpoint_exists``, ``plan.base_dir``)
for where relative paths are taken from.
"""

from __future__ import annotations

from pathlib import Path

from rdt import layout
from rdt.errors import UserError
from rdt.utils.files import read_json

#: folder names under ``results`` that are not targets
RESERVED_NAMES = layout.RESERVED


def check_target_names(runs: list[str], checkpoints: list[str]) -> None:
    """Run and evaluation-only checkpoint names become folders under ``results``: reserved names, duplicates and
    names used by both are errors."""
    for kind, names in (("runs", runs), ("evaluate_checkpoints", checkpoints)):
        bad = sorted(set(names) & set(RESERVED_NAMES))
        if bad:
            raise UserError(
                f"{kind}: name(s) {bad} are reserved for folders of results/ "
                f"({', '.join(RESERVED_NAMES)}); choose other names"
            )
    dup = sorted({n for n in checkpoints if checkpoints.count(n) > 1})
    if dup:
        raise UserError(f"evaluate_checkpoints: name(s) {dup} appear more than once; each entry needs its own name")
    clash = sorted(set(runs) & set(checkpoints))
    if clash:
        raise UserError(f"evaluate_checkpoints: name(s) {clash} are also names of runs; use distinct names")


def check_run_numbers(where: str, settings: dict, train: dict) -> None:
    """Parse-time checks of a run's numbers that would otherwise fail only after earlier stages ran: the effective
    batch divides over per-device batch x processes (the training job starts ``max(gpus, 1)``), the expert's
    attempts fit the init states from ``first_init_state`` on, and the evaluation's episodes fit the init states.
    ``settings``: the run's merged sections; ``train``: its resolved RUN.yaml settings."""
    from rdt.libero.suites import INIT_STATES_PER_TASK

    processes = max(int(settings["train"].get("gpus") or 0), 1)
    effective, per_device = train["effective_batch_size"], train["per_device_batch_size"]
    if effective % (per_device * processes):
        raise UserError(
            f"{where}.train: effective_batch_size={effective} is not divisible by per_device_batch_size="
            f"{per_device} x {processes} process(es) (train.gpus={settings['train'].get('gpus')}) = "
            f"{per_device * processes}; choose an effective batch that is a multiple of their product"
        )
    d = settings["demos"]
    if d.get("source") == "expert":
        episodes, first = d["episodes_per_task"], d.get("first_init_state", 0)
        attempts = d.get("max_attempts") or episodes
        if not episodes <= attempts <= INIT_STATES_PER_TASK - first:
            raise UserError(
                f"{where}.demos: {episodes} demos per task with max_attempts={attempts} from init state "
                f"{first} on do not fit the {INIT_STATES_PER_TASK} init states of a task (expected "
                f"episodes_per_task <= max_attempts <= {INIT_STATES_PER_TASK - first})"
            )
    check_eval_numbers(where, settings["eval"])


def check_eval_numbers(where: str, e: dict) -> None:
    from rdt.libero.suites import INIT_STATES_PER_TASK

    if not 1 <= e["episodes_per_task"] <= INIT_STATES_PER_TASK:
        raise UserError(
            f"{where}.eval: episodes_per_task={e['episodes_per_task']}; each task has "
            f"{INIT_STATES_PER_TASK} init states and episode i uses init state i, so 1.."
            f"{INIT_STATES_PER_TASK} episodes are possible"
        )


def check_tasks(where: str, sections: list[tuple[str, dict]]) -> None:
    """Every task selection (``(section, values)`` with ``suite`` and ``tasks``) names tasks of its suite; errors name
    the key as ``where.section.tasks`` (``section.tasks`` for the config's top-level sections: ``where`` empty)."""
    from rdt.libero import suites

    for section, values in sections:
        try:
            suites.select_tasks(values["suite"], [str(t) for t in values["tasks"]])
        except UserError as e:
            raise UserError(f"{where + '.' if where else ''}{section}.tasks: {e}") from None


def check_demos(plan, where: str, d: dict) -> None:
    """A run's demo folder (``demos.source`` folder or lerobot) is set and exists, and a folder of LIBERO demo
    files holds a file for every selected task (a partial download is found here, not after training)."""
    if d["source"] not in ("folder", "lerobot"):
        return
    if not d["folder"]:
        raise UserError(
            f"{where}: demos.source is {d['source']!r} but demos.folder is not set "
            "(expected a folder of LIBERO *_demo.hdf5 files, or a LeRobot dataset folder)"
        )
    if not plan.local_path(d["folder"]).is_dir():
        raise UserError(
            f"{where}: demos.folder {d['folder']!r} does not exist (expected a folder of "
            f"LIBERO *_demo.hdf5 files, relative to {plan.base_dir.resolve()})"
        )
    if d["source"] == "folder":
        from rdt.libero.convert import find_demo_files, select_sources

        try:
            select_sources(find_demo_files([str(plan.local_path(d["folder"]))]), d["suite"], d["tasks"])
        except UserError as e:
            raise UserError(f"{where}: demos.folder {d['folder']!r}: {e}") from None


def check_replay_demos(where: str, d: dict) -> None:
    """A replay run replays demo files with simulator states, which a LeRobot dataset does not have."""
    if d["source"] == "lerobot":
        raise UserError(
            f"{where}: kind replay replays LIBERO demo files (their simulator states and actions); "
            "demos.source lerobot has no simulator states: use source expert or folder"
        )


def check_init_from(plan, where: str, init: str | None) -> None:
    """A run's ``train.init_from`` is a local checkpoint folder or a Hugging Face id in the local cache."""
    if init and not plan.checkpoint_exists(init):
        raise UserError(
            f"{where}: train.init_from {init!r} is neither a local checkpoint folder nor in "
            "the local Hugging Face cache (expected a folder with config.json and weights, or "
            "an id fetched with `hf download ID`; null = random initialisation)"
        )


def check_checkpoint(plan, name: str, c: dict) -> None:
    """An evaluation-only checkpoint exists, its statistics file too, and statistics reach evaluation one way
    (its entry's ``stats`` or its ``pipeline.json``, never both)."""
    if not plan.checkpoint_exists(c["path"]):
        raise UserError(
            f"evaluate_checkpoints.{name}: path {c['path']!r} does not exist (expected a "
            "checkpoint folder with config.json and model.safetensors or pytorch_model.bin, "
            "or a Hugging Face id in the local cache)"
        )
    if c.get("stats") and not plan.local_path(c["stats"]).is_file():
        raise UserError(
            f"evaluate_checkpoints.{name}: stats {c['stats']!r} does not exist (expected the "
            "dataset_stat.json of the checkpoint's training data, or null)"
        )
    pipeline = plan.local_path(c["path"]) / layout.PIPELINE_FILE
    if c.get("stats") and pipeline.is_file() and "dataset_stat" in _json_or_empty(pipeline):
        raise UserError(
            f"evaluate_checkpoints.{name}: stats {c['stats']!r} is set but {pipeline} carries the "
            "statistics the checkpoint was trained with (dataset_stat); statistics reach "
            "evaluation one way: set stats: null"
        )


def _json_or_empty(path: Path) -> dict:
    try:
        value = read_json(path)
    except UserError:
        return {}
    return value if isinstance(value, dict) else {}
