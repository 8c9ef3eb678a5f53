"""Evaluate a checkpoint in the LIBERO simulator at one or more execution horizons H (several: the model is loaded
once and each horizon is written to --out/h<H>; without --lang the tasks' instructions are encoded with the
checkpoint's text encoder into --out/lang.safetensors; --episodes defaults to 50 per task, the LIBERO convention).

Protocol (the published LIBERO evaluations): episode i of a task starts from the task's init state i, with
env.seed(SEED), reset, set_init_state(i) and the settle no-op steps (rdt.libero.env.start_episode); at most the
suite's max steps follow; success is the environment's success check. Receding-horizon control: every H steps one
batched policy call predicts a 64-step chunk for every running episode from its current observation (both cameras
upright, two frames of history: the previous env step's frames, background at an episode's first call) and the first
H actions are executed. Simulators run in --envs worker processes fed from a queue of (task, init state) jobs.

Outputs in --out: episodes.jsonl (one line per finished episode, appended and fsynced; a rerun skips the episodes
already there and retries those that ended with a simulator error), summary.json (per task and overall success
with 95% Wilson intervals), videos/<task>__init<i>__<success|failure>.mp4 (both cameras side by side) and
evaluate.log.

This module is the command (check the request, load the policy once, one run per horizon); the pieces are beside it
in rdt/evaluation/ (settings, ledger, policy inputs, policy, the run). The policy (and torch) is imported when the
command runs, not when its --help is printed.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rdt import layout
from rdt.errors import UserError
from rdt.evaluation.ledger import SUMMARY_FILE, checkpoint_identity
from rdt.evaluation.run import evaluate
from rdt.evaluation.settings import Settings, check_episodes, check_horizon
from rdt.fingerprint import fingerprint
from rdt.libero import suites
from rdt.utils.files import read_json
from rdt.utils.logs import setup_logging

DEFAULT_CAMERA_SIZE = suites.DEMO_CAMERA_SIZE  # without pipeline.json image_size: the official demos' size
DEFAULT_EPISODES = 50  # per task: the published LIBERO evaluations
#: the stage's entry module (rdt.plan.STAGE_MODULES["evaluate"]): its fingerprint is the ``code`` of every record
CODE_MODULE = "rdt.evaluation.command"

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    # over 60 lines on purpose: one flat list of the command's flags in --help order; splitting it would scatter
    # the command line
    p.add_argument(
        "--checkpoint",
        required=True,
        metavar="DIR",
        help="checkpoint folder (ours: config.json, model.safetensors, ema/, pipeline.json; or a released "
        "RDT folder / weights file / cached hub id)",
    )
    p.add_argument(
        "--lang",
        metavar="FILE",
        help="lang.safetensors with an embedding for every evaluated task's instruction "
        "(python -m rdt encode --instructions-from-tasks SUITE ...); default: the tasks' "
        "instructions are encoded here with the checkpoint's text encoder into --out/lang.safetensors",
    )
    p.add_argument(
        "--stats",
        metavar="FILE",
        help="dataset_stat.json of the training data, for checkpoints made elsewhere (our exports carry "
        "theirs in pipeline.json): observed states far outside its state range are warned about "
        "(once) and counted in summary.json state_range (without statistics: no check)",
    )
    p.add_argument(
        "--horizon",
        required=True,
        type=int,
        nargs="+",
        metavar="H",
        help="execution horizon(s): actions executed from each predicted 64-step chunk before re-planning "
        "(1..64); with several, each is evaluated into --out/h<H>/ with the model loaded once",
    )
    p.add_argument(
        "--suite",
        metavar="S",
        help="LIBERO suite: "
        + ", ".join(suites.suite_names())
        + " (default: the suite the checkpoint was trained on, from pipeline.json)",
    )
    p.add_argument(
        "--tasks",
        nargs="+",
        metavar="T",
        help="task names, indices or shell patterns of the suite, or 'all' (default: the tasks the "
        "checkpoint was trained on when --suite is theirs, from pipeline.json; else all)",
    )
    p.add_argument(
        "--episodes",
        type=int,
        default=DEFAULT_EPISODES,
        metavar="N",
        help=f"episodes per task; episode i starts from init state i (1..{suites.INIT_STATES_PER_TASK}; "
        f"default {DEFAULT_EPISODES}, the LIBERO convention)",
    )
    p.add_argument(
        "--max-steps",
        type=int,
        metavar="M",
        help="policy steps per episode (default: the suite's published limit, "
        + ", ".join(f"{k} {v}" for k, v in suites.MAX_STEPS.items())
        + ")",
    )
    p.add_argument("--envs", type=int, default=1, metavar="K", help="parallel simulator processes (default 1)")
    p.add_argument(
        "--seed", type=int, default=0, help="env.seed for every episode and the policy's noise seed (default 0)"
    )
    p.add_argument(
        "--camera-size",
        type=int,
        metavar="PX",
        help=f"camera resolution (default: pipeline.json image_size, else {DEFAULT_CAMERA_SIZE})",
    )
    p.add_argument(
        "--videos-per-task",
        type=int,
        default=1,
        metavar="V",
        help="record the first V episodes of each task as MP4 (default 1; 0 = none)",
    )
    p.add_argument(
        "--weights",
        choices=["ema", "model"],
        help="which weights to load (default: ema when the checkpoint has them, else model)",
    )
    p.add_argument(
        "--text-encoder",
        metavar="NAME",
        help="text encoder the checkpoint was trained with (default: from pipeline.json)",
    )
    p.add_argument(
        "--vision-encoder",
        metavar="NAME",
        help="vision encoder the checkpoint was trained with (default: from pipeline.json)",
    )
    p.add_argument(
        "--control-frequency",
        type=int,
        metavar="HZ",
        help="control frequency given to the model (default: from pipeline.json)",
    )
    p.add_argument("--device", help="torch device for the policy (default: cuda if available, else cpu)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (one per checkpoint x horizon)")
    add_summary_name(p)
    p.add_argument(
        "--tensorboard",
        metavar="DIR",
        help="also write each horizon's success rate as the TensorBoard scalar success/H<h> at the checkpoint's "
        "step into DIR (the workflow: the training's tensorboard/eval-<run>, so `tensorboard --logdir results` "
        "shows success beside the training curves as evaluations finish); skipped when tensorboard is missing",
    )


def add_summary_name(p: argparse.ArgumentParser) -> None:
    """--summary-name, shared with rdt replay: the workflow names each request's summary by its identity."""
    p.add_argument(
        "--summary-name",
        default=SUMMARY_FILE,
        metavar="NAME",
        help=f"file name of the summary in --out (default {SUMMARY_FILE}; the workflow writes summary-<key>.json, "
        "the key being the request's identity: settings, checkpoint, code)",
    )


def trained_suite_and_tasks(checkpoint: str, suite: str | None, tasks: list[str] | None) -> tuple[str, list[str]]:
    """``--suite``/``--tasks`` with their defaults: the suite and tasks the checkpoint's pipeline.json says it was
    trained on (the tasks only when the suite is that one; otherwise all tasks)."""
    try:
        trained = read_json(Path(checkpoint) / "pipeline.json")
    except UserError:  # none (a checkpoint made elsewhere) or unreadable: no defaults from it
        trained = {}
    if suite is None:
        suite = trained.get("suite")
        if not suite:
            raise UserError(
                f"--suite is not given and {checkpoint} has no pipeline.json naming the suite it was "
                "trained on (a checkpoint made elsewhere): pass --suite S [--tasks ...]"
            )
    if tasks is None:
        tasks = list(trained.get("tasks") or ["all"]) if suite == trained.get("suite") else ["all"]
    return suite, tasks


def _check_positive(value: int | None, flag: str) -> None:
    if value is not None and value < 1:
        raise UserError(f"{flag} {value}: expected a positive integer")


def _check_request(args: argparse.Namespace) -> list[int]:
    """The distinct ``--horizon`` values, once every flag that can be checked without the model is checked."""
    horizons = list(dict.fromkeys(args.horizon))
    for h in horizons:
        check_horizon(h)
    check_episodes(args.episodes)
    _check_positive(args.max_steps, "--max-steps")
    _check_positive(args.envs, "--envs")
    _check_positive(args.camera_size, "--camera-size")
    if args.videos_per_task < 0:
        raise UserError(f"--videos-per-task {args.videos_per_task}: expected 0 or more")
    return horizons


def _load_policy(args: argparse.Namespace):
    """The checkpoint's policy with the flags' overrides; its weights are checked finite."""
    from rdt.evaluation.policy import Policy

    policy = Policy.from_checkpoint(
        args.checkpoint,
        vision_encoder=args.vision_encoder,
        text_encoder=args.text_encoder,
        control_frequency=args.control_frequency,
        weights=args.weights,
        device=args.device,
        seed=args.seed,
    )
    from rdt.model.verify import check_finite

    check_finite(policy.runner.state_dict(), f"{args.checkpoint} ({policy.pipeline.get('weights')} weights)")
    return policy


def _training_stats(args: argparse.Namespace, pipeline: dict) -> dict | None:
    """The dataset statistics for the state-range check. They reach evaluation one way: from the export's
    pipeline.json (the entry it was trained with), or --stats for a checkpoint made elsewhere; never both."""
    from rdt.data.stats import load_entry

    if args.stats and pipeline.get("dataset_stat"):
        raise UserError(
            f"--stats {args.stats}: checkpoint {args.checkpoint} carries the statistics it was trained "
            "with (pipeline.json dataset_stat); --stats is for checkpoints made elsewhere, leave it out"
        )
    return load_entry(args.stats) if args.stats else pipeline.get("dataset_stat")


def _run_info(args: argparse.Namespace, policy, stats: dict | None) -> dict:
    """The checkpoint, device and input facts recorded with every episode and in summary.json."""
    pipeline = policy.pipeline
    return {
        "checkpoint": str(Path(args.checkpoint).resolve()) if Path(args.checkpoint).exists() else args.checkpoint,
        "step": pipeline.get("step"),
        "device": str(policy.device),
        "weights": pipeline.get("weights"),
        "text_encoder": policy.text_encoder,
        "vision_encoder": policy.vision.name,
        "control_frequency": policy.control_frequency,
        "lang": str(args.lang),
        "stats": args.stats or ("pipeline.json" if stats else None),
        "identity": checkpoint_identity(args.checkpoint, pipeline, pipeline.get("weights") or "model"),
        "code": fingerprint(CODE_MODULE),
    }


def settings_from_args(args: argparse.Namespace, tasks: list, horizon: int, pipeline: dict) -> Settings:
    """The settings of one horizon's evaluation (or of a replay: horizon 0, no pipeline.json), the flags' defaults
    filled in."""
    return Settings(
        suite=args.suite,
        tasks=tuple(t.name for t in tasks),
        episodes=args.episodes,
        horizon=horizon,
        max_steps=args.max_steps or suites.MAX_STEPS[args.suite],
        envs=args.envs,
        seed=args.seed,
        camera_size=args.camera_size or int(pipeline.get("image_size") or DEFAULT_CAMERA_SIZE),
        videos_per_task=args.videos_per_task,
    )


def main(args: argparse.Namespace) -> int:
    setup_logging()  # time, level and logger name on each record
    # everything that can be wrong with the request is checked before a model or simulator is loaded
    horizons = _check_request(args)
    args.suite, args.tasks = trained_suite_and_tasks(args.checkpoint, args.suite, args.tasks)
    tasks = suites.select_tasks(args.suite, args.tasks)
    from rdt.encoders import check_text_fits
    from rdt.lang import LanguageTable

    table = LanguageTable.load(args.lang) if args.lang else None
    lang = {t.name: table.get(t.language) for t in tasks} if table is not None else None
    policy = _load_policy(args)
    if table is None:  # no --lang: encode the tasks' instructions once with the checkpoint's text encoder
        args.lang = str(encode_task_language(tasks, policy.text_encoder, Path(args.out), policy.device))
        table = LanguageTable.load(args.lang)
        lang = {t.name: table.get(t.language) for t in tasks}
    table.check_encoder(policy.text_encoder)
    cfg = policy.runner.config
    check_text_fits(table.hidden_size, cfg, args.lang, f"checkpoint {args.checkpoint}")
    for h in horizons:
        check_horizon(h, cfg.pred_horizon)
    stats = _training_stats(args, policy.pipeline)
    info = _run_info(args, policy, stats)
    for h in horizons:
        out = horizon_out(Path(args.out), h, horizons)
        summary = evaluate(
            policy,
            settings_from_args(args, tasks, h, policy.pipeline),
            out,
            lang,
            info=info,
            stats=stats,
            summary_name=args.summary_name,
        )
        o = summary["overall"]
        if args.tensorboard:
            log_success(Path(args.tensorboard), summary)
        rate = "n/a" if o["success_rate"] is None else f"{100 * o['success_rate']:.1f}%"
        print(
            f"{args.suite} H={h}: {o['successes']}/{o['episodes'] - o['errors']} successes ({rate}), "
            f"{o['errors']} errors -> {out / args.summary_name}"
        )
    return 0


def log_success(folder: Path, summary: dict) -> bool:
    """The summary's success rate (and episode count) as TensorBoard scalars at its checkpoint step; False when
    tensorboard is not installed (as training's metrics, it is optional)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("tensorboard is not installed: --tensorboard %s skipped", folder)
        return False
    o, step, h = summary["overall"], int(summary.get("step") or 0), int(summary["horizon"])
    with SummaryWriter(str(folder)) as writer:
        if o["success_rate"] is not None:
            writer.add_scalar(f"success/H{h}", o["success_rate"], step)
        writer.add_scalar(f"episodes/H{h}", o["episodes"] - o["errors"], step)
    return True


def horizon_out(out: Path, horizon: int, horizons: list[int]) -> Path:
    """Where one horizon's results go: ``--out`` itself for one horizon, ``--out/h<H>`` for several."""
    return out if len(horizons) == 1 else out / layout.horizon_name(horizon)


def encode_task_language(tasks: Sequence[suites.Task], text_encoder: str, out: Path, device: Any) -> Path:
    """Embeddings of the tasks' instructions with ``text_encoder`` into ``out/lang.safetensors`` (reused when it
    holds them all from the same encoder), the encoder freed afterwards."""
    import torch

    from rdt.encoders import TINY, load_text_encoder
    from rdt.lang import LanguageTable, encode_instructions

    path = out / "lang.safetensors"
    wanted = [t.language for t in tasks]
    if path.is_file():
        try:
            table = LanguageTable.load(path)
            table.check_encoder(text_encoder)
            if all(w in table for w in wanted):
                return path
        except UserError:
            pass
    out.mkdir(parents=True, exist_ok=True)
    dtype = torch.float32 if text_encoder == TINY else torch.bfloat16  # as `python -m rdt encode` does
    encoder = load_text_encoder(text_encoder, device=device, dtype=dtype)
    log.info("encoding %d task instruction(s) with %s into %s", len(set(wanted)), text_encoder, path)
    encode_instructions(wanted, encoder, path)
    del encoder
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return path
