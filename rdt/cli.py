"""`python -m rdt COMMAND ...`: one entry point for every pipeline stage.

Each command lives in its own module, which defines ``add_arguments(parser)`` and ``main(args) -> int``.
Only the chosen command's module is imported, so ``python -m rdt --help`` stays fast.
Bad input (UserError) and an output location that is full, read-only or forbidden (checked before the command
starts, and any such OSError later) end in one ``error:`` line naming the path and the cause, exit status 2.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import sys
from pathlib import Path

from rdt.errors import UserError
from rdt.utils.atomic import check_writable, disk_error_line
from rdt.utils.logs import quiet_third_party, setup_logging

# command -> (module, one-line description)
COMMANDS: dict[str, tuple[str, str]] = {
    "expert": ("rdt.libero.expert", "generate scripted demonstrations in the LIBERO simulator (official demo layout)"),
    "convert": ("rdt.libero.convert", "convert LIBERO demo HDF5 files into one training HDF5"),
    "stats": ("rdt.data.stats", "dataset statistics in RDT's dataset_stat.json form"),
    "encode": ("rdt.encode", "T5 embeddings of every unique instruction"),
    "train": ("rdt.training.command", "fine-tune RDT with accelerate up to a given step"),
    "evaluate": ("rdt.evaluation.command", "evaluate a checkpoint in LIBERO at one or more execution horizons"),
    "replay": ("rdt.replay", "open-loop replay of demonstrations from evaluation init states (the floor to beat)"),
    "report": ("rdt.report.command", "figures and tables from evaluation and training results"),
    "verify-checkpoint": ("rdt.model.verify", "load a checkpoint folder strictly; check parity vectors if present"),
    "fingerprint": ("rdt.fingerprint", "print the code fingerprint of rdt modules (used by the workflow)"),
    "plan": ("rdt.plan.command", "print what a workflow configuration's evaluations will cost, before anything runs"),
    "run": ("rdt.run", "run the workflow (snakemake) with dotted --section.key=value overrides"),
}

#: what `python -m rdt COMMAND --help` shows first: one sentence for the user and a complete example. The examples
#: form one walk-through in a scratch folder work/ (README, "Command line"): each reads only files of the repository
#: or what an earlier example wrote (tests/test_cli_help.py checks this). The module's docstring follows the options.
HELP: dict[str, tuple[str, str]] = {
    "expert": (
        "Generate demonstrations of LIBERO pick-and-place tasks with a scripted expert in the simulator, "
        "written as official LIBERO demo files.",
        "python -m rdt expert --suite libero_object --tasks pick_up_the_alphabet_soup_and_place_it_in_the_basket"
        " --episodes 1 --out work/demos",
    ),
    "convert": (
        "Convert LIBERO demo files (official, regenerated, or expert-made) into one training HDF5.",
        "python -m rdt convert --demos work/demos --suite libero_object --out work/data.h5",
    ),
    "stats": (
        "Compute the dataset statistics (RDT's dataset_stat.json) of a training HDF5.",
        "python -m rdt stats --data work/data.h5 --out work/dataset_stat.json",
    ),
    "encode": (
        "Encode every instruction of a training HDF5 (or of LIBERO tasks) once with the T5 text encoder.",
        "python -m rdt encode --data work/data.h5 --text-encoder tiny --out work/lang.safetensors",
    ),
    "train": (
        "Fine-tune RDT on a training HDF5 up to a given optimizer step, resuming the run folder's newest "
        "checkpoint (several GPUs: `accelerate launch --num_processes N -m rdt train ...`).",
        "python -m rdt train --config docs/examples/tiny_run.yaml --until-step 20 --out work/train",
    ),
    "evaluate": (
        "Evaluate a checkpoint in the LIBERO simulator at one or more execution horizons and write "
        "per-episode results, a summary and videos.",
        "python -m rdt evaluate --checkpoint work/train/export/step-20 --lang work/lang.safetensors "
        "--horizon 8 --episodes 1 --out work/run/eval/step-20/h8",
    ),
    "replay": (
        "Replay demonstrations open-loop (no policy) from the evaluation's init states: the floor an imitation "
        "policy has to beat, in evaluate's result layout.",
        "python -m rdt replay --demos work/demos --suite libero_object --tasks "
        "pick_up_the_alphabet_soup_and_place_it_in_the_basket --episodes 1 --out work/run_replay",
    ),
    "report": (
        "Build the figures and tables of the report from evaluation (and training) results.",
        "python -m rdt report --results work/run --out work/report",
    ),
    "verify-checkpoint": (
        "Load a checkpoint folder with strict key checking (and check its parity vectors when it has them).",
        "python -m rdt verify-checkpoint work/train/export/step-20",
    ),
    "fingerprint": (
        "Print the code fingerprint of an rdt module and the rdt modules it imports (what the workflow "
        "uses to rerun a stage whose code changed).",
        "python -m rdt fingerprint rdt.training.command",
    ),
    "plan": (
        "Print what the evaluations of a workflow configuration will cost (episodes, simulator steps, policy "
        "calls and hours) before anything runs.",
        "python -m rdt plan --configfile config/rdt1b_libero90.yaml",
    ),
    "run": (
        "Run the workflow with snakemake, taking settings as dotted flags (as LeRobot and openpi read them) on "
        "top of a config file.",
        "python -m rdt run --configfile config/learning_check.yaml --train.max_steps=300 --eval.exec_horizons=[8] -n",
    ),
}

#: commands whose --out is a folder (for the others it is a file, and its folder is checked)
OUT_IS_FOLDER = {"expert", "train", "evaluate", "replay", "report"}


def _top_parser() -> argparse.ArgumentParser:
    epilog = "commands:\n" + "\n".join(f"  {name:<18} {desc}" for name, (_, desc) in COMMANDS.items())
    p = argparse.ArgumentParser(
        prog="python -m rdt",
        description="RDT fine-tuning and LIBERO evaluation pipeline. Run `python -m rdt COMMAND --help` for details.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("command", choices=sorted(COMMANDS), metavar="COMMAND", help="one of the commands below")
    return p


def command_parser(name: str, module) -> argparse.ArgumentParser:
    """The command's parser: its sentence and example (HELP) on top, the module's own notes after the options."""
    sentence, example = HELP[name]
    notes = (module.__doc__ or "").strip()
    parser = argparse.ArgumentParser(
        prog=f"python -m rdt {name}",
        description=f"{sentence}\n\nexample:\n  {example}",
        epilog=f"details:\n{notes}" if notes else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # `--config x=1` must not silently become --configfile
    )
    module.add_arguments(parser)
    return parser


def parse_command(name: str, module, argv: list[str]) -> argparse.Namespace:
    """The command's arguments; a command that hands its arguments on (``PASSTHROUGH``, e.g. ``run`` to snakemake)
    gets the ones it does not know in ``args.args``."""
    parser = command_parser(name, module)
    if not getattr(module, "PASSTHROUGH", False):
        return parser.parse_args(argv)
    args, unknown = parser.parse_known_args(argv)
    args.args = unknown  # in their order: `--configfile FILE` stays a pair
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        top.error(f"unknown command {name!r}; choose from {', '.join(sorted(COMMANDS))}")
    module_name, _ = COMMANDS[name]
    quiet_third_party()  # before any command module imports robosuite
    setup_logging(logging.WARNING)  # time-stamped records; a command may log more (evaluate: INFO)
    module = importlib.import_module(module_name)
    args = parse_command(name, module, rest)
    try:
        out = getattr(args, "out", None)
        if out:  # a full or read-only output location fails here, before any model or data is loaded
            folder = Path(out) if name in OUT_IS_FOLDER else Path(out).parent
            try:
                check_writable(folder)
            except OSError as e:
                if disk_error_line(e) is None:  # e.g. a file where the folder should be
                    why = (
                        "a file is in the way of the folder"
                        if e.errno in (errno.EEXIST, errno.ENOTDIR)
                        else e.strerror or str(e)
                    )
                    raise UserError(f"--out {out}: cannot write into {e.filename or folder} ({why})") from None
                raise
        return int(module.main(args) or 0)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        line = disk_error_line(e)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        writer = sys.modules.get("rdt.data.writer")  # loaded by the commands that write a training HDF5
        if writer is not None and writer.HDF5_LEFT_BROKEN:
            _exit_at_once(2)
        return 2


def _exit_at_once(status: int) -> None:
    """After an HDF5 write failed on a full disk, HDF5 keeps objects it could not flush, and freeing them at
    interpreter exit crashes (segmentation fault): exit now with ``status``, output flushed."""
    import logging
    import os

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
