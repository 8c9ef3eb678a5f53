"""Convert official LIBERO demo files (``<task>_demo.hdf5``, robomimic layout) into one training HDF5.

Selects tasks of a suite by name, index or pattern, takes the first N usable demos of each task (in numeric
demo order), maps state and action into RDT's 128-dim unified vectors (rdt.libero.mapping), turns the frames
upright and writes the layout of docs/formats.md §2. How a file pairs observations with actions is detected per
file (:func:`detect_pairing`): official files record each observation after its action (observation j is paired
with action j+1: a demo of T steps gives T-1 training steps), regenerated files (OpenVLA) before it (T steps).
No-op steps are dropped when asked (``drop_noops``). Demos with fewer than --min-steps training steps are reported
and skipped, never padded. Bad files give an error naming the file, the key and what was expected.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

import h5py

from rdt.data.writer import Episode, Origin
from rdt.errors import UserError
from rdt.libero import mapping, suites
from rdt.libero.demo_reader import demo_steps, detect_pairing, read_demo, read_instruction
from rdt.libero.sources import DEFAULT_MIN_STEPS, ConversionPlan, SourceTask, check_counts

DEMO_SUFFIX = "_demo.hdf5"
SOURCES = ("official", "lerobot")  # --source: robomimic HDF5 files (official or regenerated), LeRobot v2.x
_DEMO_KEY = re.compile(r"^demo_(\d+)$")

# ------------------------------------------------------------------------------------------------ finding files


def find_demo_files(inputs: list[str]) -> dict[str, Path]:
    """Task name -> demo file, from files and folders (searched recursively for ``*_demo.hdf5``)."""
    found: dict[str, Path] = {}
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files = sorted(p.rglob(f"*{DEMO_SUFFIX}"))
        elif p.is_file():
            if not p.name.endswith(DEMO_SUFFIX):
                raise UserError(f"{p}: expected a LIBERO demo file named '<task name>{DEMO_SUFFIX}'")
            files = [p]
        else:
            raise UserError(f"--demos {item}: no such file or folder")
        for f in files:
            name = f.name[: -len(DEMO_SUFFIX)]
            if name in found and found[name].resolve() != f.resolve():
                raise UserError(f"two demo files for task {name!r}: {found[name]} and {f}; pass only one")
            found[name] = f
    if not found:
        raise UserError(f"no '*{DEMO_SUFFIX}' files found in {', '.join(inputs)}")
    return found


def infer_suite(names: list[str]) -> str:
    """The first suite (in suite order) whose task table holds every given task name."""
    for suite in suites.suite_names():
        known = {t.name for t in suites.tasks(suite)}
        if all(n in known for n in names):
            return suite
    unknown = [n for n in names if not any(n in {t.name for t in suites.tasks(s)} for s in suites.suite_names())]
    if unknown:
        raise UserError(
            f"demo file(s) for unknown LIBERO task(s) {unknown[:3]}; file names must be "
            f"'<task name>{DEMO_SUFFIX}' with a task of one of {suites.suite_names()}"
        )
    raise UserError(
        f"the demo files belong to more than one suite; choose one with --suite ({', '.join(suites.suite_names())})"
    )


def select_sources(files: dict[str, Path], suite: str | None, selectors: list[str] | None) -> list[SourceTask]:
    """The selected tasks with their demo files, in suite order. Tasks selected by name, index or ``all`` must
    each have a file (a partial download would otherwise train on what is there while evaluation covers every
    task); a pattern (``KITCHEN_SCENE7_*``) and no ``selectors`` take the matching tasks that have one. An empty
    selection is an error."""
    suite = suite or infer_suite(sorted(files))
    chosen = suites.select_tasks(suite, selectors)
    exact = [str(s) for s in selectors or [] if not any(c in str(s) for c in "*?[")]
    required = {t.name for t in suites.select_tasks(suite, exact)} if exact else set()
    missing = [t.name for t in chosen if t.name in required and t.name not in files]
    if missing and len(missing) < len(chosen):
        raise UserError(
            f"{len(missing)} of the {len(chosen)} selected task(s) of suite {suite!r} (selectors: {selectors}) have "
            f"no demo file among the {len(files)} found, e.g. {missing[:3]} (a partial download?): download "
            "the rest, or select only the tasks that are there"
        )
    sources = [SourceTask(t, files[t.name], t.language) for t in chosen if t.name in files]
    if not sources:
        raise UserError(
            f"none of the {len(chosen)} selected task(s) of suite {suite!r} "
            f"(selectors: {selectors or 'all'}) has a demo file among {len(files)} file(s) found, "
            f"e.g. {sorted(files)[:3]}"
        )
    return sources


# ------------------------------------------------------------------------------------------------ opening and planning


def _open(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise UserError(f"{path}: not a readable HDF5 file ({e})") from None


def demo_keys(f: h5py.File, path: Path) -> list[str]:
    """``data/demo_<i>`` group names sorted by i (numerically)."""
    if "data" not in f or not isinstance(f["data"], h5py.Group):
        raise UserError(f"{path}: missing group 'data' (expected the robomimic layout data/demo_<i>)")
    keys = [k for k in f["data"] if _DEMO_KEY.match(k)]
    if not keys:
        raise UserError(f"{path}: group 'data' holds no 'demo_<i>' groups")
    return sorted(keys, key=lambda k: int(_DEMO_KEY.match(k).group(1)))


def _file_pairing(f: h5py.File, keys: list[str], path: Path, pairing: str | None) -> str:
    """The file's observation/action pairing: ``pairing`` when given (--pairing), else detected; printed."""
    if pairing is not None:
        print(f"{path}: {pairing} (as given by --pairing, not detected)")
        return pairing
    detected, errors = detect_pairing(f, keys, path)
    print(
        f"{path}: {detected} (median joint error {errors[detected]:.2g} rad, other "
        f"convention {max(errors.values()):.2g})"
    )
    return detected


def _choose_demos(
    f: h5py.File, keys: list[str], src: SourceTask, demos_per_task: int | None, min_steps: int, drop_noops: bool
) -> tuple[list[str], list[str]]:
    """``(chosen, skipped)``: the first ``demos_per_task`` demos of ``keys`` (all when None) giving at least
    ``min_steps`` training steps, and the shorter ones met on the way (reported)."""
    chosen, skipped = [], []
    for k in keys:
        if demos_per_task is not None and len(chosen) == demos_per_task:
            break
        n, _ = demo_steps(f, k, src.path, src.pairing, drop_noops)
        (chosen if n >= min_steps else skipped).append(k)
        if n < min_steps:
            print(f"skipping {src.path}:data/{k}: {n} training steps < --min-steps {min_steps}")
    return chosen, skipped


def convert(
    inputs: list[str],
    out_path: str | Path,
    suite: str | None = None,
    selectors: list[str] | None = None,
    demos_per_task: int | None = None,
    min_steps: int = DEFAULT_MIN_STEPS,
    drop_noops: bool = False,
    image_size: int | None = None,
    pairing: str | None = None,
) -> dict:
    """Convert; ``pairing`` (mapping.OBS_CONVENTIONS) overrides the per-file detection. Returns the summary
    ``{"tasks": {task: {"episodes", "steps", "skipped", "noops", "pairing"}}, "episodes", "steps", "noops",
    "dataset_id"}``.
    ``drop_noops`` leaves out no-op steps (counted in ``noops``); ``image_size`` resizes every frame to that size
    (None keeps the files' size, which must then be the same everywhere)."""
    check_counts(demos_per_task, min_steps)
    if image_size is not None and image_size < 1:
        raise UserError(f"--image-size must be >= 1, got {image_size}")
    files = find_demo_files(inputs)
    sources = select_sources(files, suite, selectors)
    suite_name = sources[0].task.suite
    print(f"{suite_name}: {len(sources)} selected task(s) with a demo file ({len(files)} demo file(s) found)")
    # plan: which demos of which file (first N usable ones, numeric order); short ones are reported and skipped
    plan = ConversionPlan(suite_name, "official", drop_noops, min_steps)
    for src in sources:
        with _open(src.path) as f:
            keys = demo_keys(f, src.path)
            src.source_instruction = read_instruction(f, src.path, src.task.language)
            src.pairing = _file_pairing(f, keys, src.path, pairing)
            chosen, skipped = _choose_demos(f, keys, src, demos_per_task, min_steps, drop_noops)
        if demos_per_task is not None and len(chosen) < demos_per_task:
            print(f"warning: {src.path}: only {len(chosen)} usable demo(s), {demos_per_task} requested")
        plan.add(src, chosen, skipped)
    return plan.write(out_path, _episodes(plan, image_size))


def _episodes(plan: ConversionPlan, image_size: int | None) -> Iterator[tuple[Origin, Episode]]:
    """The planned demos, read one at a time, each file opened once."""
    for src, keys in plan.tasks:
        with _open(src.path) as f:
            for k in keys:
                yield src.origin(k), read_demo(f, k, src.path, src.pairing, plan.drop_noops, image_size)


# ------------------------------------------------------------------------------------------------ command
def print_summary(summary: dict, out_path: str | Path) -> None:
    width = max(len(t) for t in summary["tasks"])
    print(f"{'task':<{width}}  episodes  steps  skipped  no-ops dropped  pairing")
    for task, s in summary["tasks"].items():
        print(
            f"{task:<{width}}  {s['episodes']:>8}  {s['steps']:>5}  {len(s['skipped']):>7}  {s['noops']:>14}  "
            f"{s['pairing']}"
        )
    print(
        f"wrote {out_path}: {summary['episodes']} episodes, {summary['steps']} steps, "
        f"{len(summary['tasks'])} task(s), {summary['noops']} no-op steps dropped, dataset {summary['dataset_id']}"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # over 60 lines on purpose: one flat list of the command's flags in --help order; splitting it would scatter
    # the command line
    parser.add_argument(
        "--demos",
        nargs="+",
        required=True,
        metavar="DIR|FILE",
        help="LIBERO demo files '<task>_demo.hdf5' or folders holding them (searched recursively); "
        "with --source lerobot: the dataset folder (meta/, data/, videos/)",
    )
    parser.add_argument(
        "--source",
        choices=SOURCES,
        default="official",
        help="official: robomimic HDF5 demo files, official or regenerated (the observation/action "
        "pairing is detected per file); lerobot: a LeRobot v2.x LIBERO dataset (default: "
        "official)",
    )
    parser.add_argument("--out", required=True, help="training HDF5 to write (docs/formats.md §2)")
    parser.add_argument(
        "--suite",
        choices=suites.suite_names(),
        help="suite the tasks belong to (default: the first suite holding every task found)",
    )
    parser.add_argument(
        "--tasks",
        nargs="+",
        metavar="SEL",
        help="task names, indices in the suite, shell patterns such as 'KITCHEN_SCENE7_*', "
        "or 'all' (default: all tasks of the suite that have a demo file)",
    )
    parser.add_argument(
        "--demos-per-task",
        type=int,
        metavar="N",
        help="use the first N usable demos of each task, in demo_<i> order (default: all)",
    )
    parser.add_argument(
        "--min-steps",
        type=int,
        default=DEFAULT_MIN_STEPS,
        metavar="M",
        help=f"skip (and report) demos giving fewer than M training steps (default: {DEFAULT_MIN_STEPS})",
    )
    parser.add_argument(
        "--pairing",
        choices=mapping.OBS_CONVENTIONS,
        help="how the HDF5 files pair observations with actions, for files whose convention cannot "
        "be detected (default: detected per file from obs/joint_states and states)",
    )
    parser.add_argument(
        "--drop-noops",
        action="store_true",
        help="leave out no-op steps (zero motion, unchanged gripper; what OpenVLA/openpi drop), "
        "counted in the summary and the training file (default: keep every step)",
    )
    parser.add_argument(
        "--frames",
        choices=mapping.FRAME_CONVENTIONS,
        help="--source lerobot: how the dataset stores its frames (default: what its layout "
        "declares, upright for the published LIBERO datasets); HDF5 demo files are always "
        "raw renders (rotated)",
    )
    parser.add_argument(
        "--image-size",
        type=int,
        metavar="S",
        help="resize every frame to SxS (default: keep the sources' size, e.g. 128 official, 256 regenerated)",
    )


def main(args: argparse.Namespace) -> int:
    if args.source == "lerobot":
        from rdt.libero import lerobot

        summary = lerobot.convert(
            args.demos,
            args.out,
            args.suite,
            args.tasks,
            args.demos_per_task,
            args.min_steps,
            args.drop_noops,
            args.image_size,
            args.frames,
        )
    else:
        if args.frames is not None:
            raise UserError("--frames is for --source lerobot; LIBERO HDF5 demo files hold raw (rotated) renders")
        summary = convert(
            args.demos,
            args.out,
            args.suite,
            args.tasks,
            args.demos_per_task,
            args.min_steps,
            args.drop_noops,
            args.image_size,
            args.pairing,
        )
    print_summary(summary, args.out)
    return 0
