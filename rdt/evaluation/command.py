"""Evaluate a checkpoint in the LIBERO simulator at one or more execution horizons H (several: the model is loaded
once and each horizon is written to --out/h<H>; without --lang the tasks' instructions are encoded with the
checkpoint's text encoder into --out/lang.safetensors; --episodes defaults to 50 per task, the LIBERO convention).

The request is a settings document (--config FILE, rdt/evaluation/config.py: the workflow writes one per evaluation)
with the flags over it: every flag overrides its key, so a checkpoint made elsewhere needs no document. It is
validated once, before anything loads.

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
in rdt/evaluation/ (config, settings, ledger, policy inputs, policy, the run, trackers). The policy (and torch) is
imported when the command runs, not when its --help is printed.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rdt import layout
from rdt.errors import UserError
from rdt.evaluation import config as eval_config
from rdt.evaluation.config import DEFAULT_CAMERA_SIZE, DEFAULT_EPISODES, EvalConfig, trained_suite_and_tasks
from rdt.evaluation.ledger import SUMMARY_FILE, checkpoint_identity
from rdt.evaluation.run import evaluate
from rdt.evaluation.settings import Settings, check_horizon
from rdt.evaluation.trackers import WandbLog, log_success, training_group
from rdt.fingerprint import fingerprint
from rdt.libero import suites
from rdt.utils.logs import setup_logging

__all__ = ["DEFAULT_CAMERA_SIZE", "DEFAULT_EPISODES", "log_success", "trained_suite_and_tasks"]
#: the stage's entry module (rdt.plan.STAGE_MODULES["evaluate"]): its fingerprint is the ``code`` of every record
CODE_MODULE = "rdt.evaluation.command"

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    # over 60 lines on purpose: one flat list of the command's flags in --help order; splitting it would scatter
    # the command line. Every default is None, so that a flag that is given overrides the --config document and
    # one that is not leaves it (the defaults are EvalConfig's, rdt/evaluation/config.py).
    p.add_argument(
        "--config",
        metavar="FILE",
        help="the evaluation's settings document (YAML, the keys of rdt/evaluation/config.py, docs/formats.md; the "
        "workflow writes eval-<key>.yaml); every flag below overrides its key",
    )
    p.add_argument(
        "--checkpoint",
        metavar="DIR",
        help="checkpoint folder (ours: config.json, model.safetensors, ema/, pipeline.json; or a released "
        "RDT folder / weights file / cached hub id); required here or in --config",
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
        type=int,
        nargs="+",
        metavar="H",
        help="execution horizon(s): actions executed from each predicted 64-step chunk before re-planning "
        "(1..64); with several, each is evaluated into --out/h<H>/ with the model loaded once; required here or "
        "in --config (exec_horizons)",
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
    p.add_argument("--envs", type=int, metavar="K", help="parallel simulator processes (default 1)")
    p.add_argument("--seed", type=int, help="env.seed for every episode and the policy's noise seed (default 0)")
    p.add_argument(
        "--camera-size",
        type=int,
        metavar="PX",
        help=f"camera resolution (default: pipeline.json image_size, else {DEFAULT_CAMERA_SIZE})",
    )
    p.add_argument(
        "--videos-per-task",
        type=int,
        metavar="V",
        help="record the first V episodes of each task as MP4 (default 1; 0 = none)",
    )
    p.add_argument(
        "--weights",
        choices=list(eval_config.WEIGHTS),
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
    p.add_argument(
        "--report-to",
        choices=list(eval_config.REPORT_TO),
        help="wandb: also log each horizon's success rate and episode count to Weights & Biases as it finishes, "
        "against the checkpoint step, in the training's W&B group (needs wandb; WANDB_MODE=offline works); "
        "default none",
    )
    p.add_argument("--wandb-project", metavar="NAME", help="W&B project (default $WANDB_PROJECT, else rdt-libero)")
    p.add_argument(
        "--wandb-group",
        metavar="NAME",
        help="W&B group (default: the training's W&B run id, <run>-<identity> from pipeline.json)",
    )
    p.add_argument(
        "--run",
        metavar="NAME",
        help="name of the evaluated run: the W&B run's name and part of its id (default: pipeline.json run, "
        "else the checkpoint folder's name)",
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


#: the argparse destination of each EvalConfig key's flag
DESTS = {key: flag[2:].replace("-", "_") for key, flag in eval_config.FLAGS.items()}


def config_from_args(args: argparse.Namespace) -> tuple[EvalConfig, eval_config.Where]:
    """The request: the --config document with the given flags over it, validated once (an error names the flag,
    or the document's file and key); with how errors name each key."""
    values = eval_config.read(args.config) if getattr(args, "config", None) else {}
    given = {}
    for key, dest in DESTS.items():
        value = getattr(args, dest, None)
        if value is not None:
            given[key] = value
    if "exec_horizons" in given:  # --horizon 8 8 evaluates H=8 once
        given["exec_horizons"] = list(dict.fromkeys(given["exec_horizons"]))
    source = getattr(args, "config", None) or "rdt evaluate"
    cfg = eval_config.from_dict({**values, **given}, source=source, flags=given)
    return cfg, eval_config.Where(source, given)


def _load_policy(cfg: EvalConfig):
    """The checkpoint's policy with the settings' overrides; its weights are checked finite."""
    from rdt.evaluation.policy import Policy

    policy = Policy.from_checkpoint(
        cfg.checkpoint,
        vision_encoder=cfg.vision_encoder,
        text_encoder=cfg.text_encoder,
        control_frequency=cfg.control_frequency,
        weights=cfg.weights,
        device=cfg.device,
        seed=cfg.seed,
    )
    from rdt.model.verify import check_finite

    check_finite(policy.runner.state_dict(), f"{cfg.checkpoint} ({policy.pipeline.get('weights')} weights)")
    return policy


def _training_stats(cfg: EvalConfig, pipeline: dict) -> dict | None:
    """The dataset statistics for the state-range check. They reach evaluation one way: from the export's
    pipeline.json (the entry it was trained with), or --stats for a checkpoint made elsewhere; never both."""
    from rdt.data.stats import load_entry

    if cfg.stats and pipeline.get("dataset_stat"):
        raise UserError(
            f"--stats {cfg.stats}: checkpoint {cfg.checkpoint} carries the statistics it was trained "
            "with (pipeline.json dataset_stat); --stats is for checkpoints made elsewhere, leave it out"
        )
    return load_entry(cfg.stats) if cfg.stats else pipeline.get("dataset_stat")


def _run_info(cfg: EvalConfig, lang: str, policy, stats: dict | None) -> dict:
    """The checkpoint, device and input facts recorded with every episode and in summary.json."""
    pipeline = policy.pipeline
    return {
        "checkpoint": str(Path(cfg.checkpoint).resolve()) if Path(cfg.checkpoint).exists() else cfg.checkpoint,
        "step": pipeline.get("step"),
        "device": str(policy.device),
        "weights": pipeline.get("weights"),
        "text_encoder": policy.text_encoder,
        "vision_encoder": policy.vision.name,
        "control_frequency": policy.control_frequency,
        "lang": str(lang),
        "stats": cfg.stats or ("pipeline.json" if stats else None),
        "identity": checkpoint_identity(cfg.checkpoint, pipeline, pipeline.get("weights") or "model"),
        "code": fingerprint(CODE_MODULE),
    }


def settings_from_args(args: argparse.Namespace, tasks: list, horizon: int, pipeline: dict) -> Settings:
    """The settings of a replay (horizon 0, no pipeline.json) from rdt replay's flags, the defaults filled in as
    :meth:`EvalConfig.settings` does for an evaluation."""
    cfg = EvalConfig(
        suite=args.suite,
        episodes_per_task=args.episodes,
        max_steps=args.max_steps,
        envs=args.envs,
        seed=args.seed,
        camera_size=args.camera_size,
        videos_per_task=args.videos_per_task,
    )
    return cfg.settings(tasks, horizon, pipeline)


def _wandb(cfg: EvalConfig, pipeline: dict) -> WandbLog | None:
    """The W&B run of ``report_to: wandb`` (None otherwise): the evaluated run's, in its training's group."""
    if cfg.report_to != "wandb":
        return None
    run = cfg.run or pipeline.get("run") or Path(cfg.checkpoint).name
    group = cfg.wandb_group or training_group(pipeline)
    step = int(pipeline.get("step") or 0)
    config = {"run": run, "suite": cfg.suite, "training": group, "step": step}
    return WandbLog(cfg.wandb_project, group, run, step, cfg.exec_horizons, config)


def main(args: argparse.Namespace) -> int:
    setup_logging()  # time, level and logger name on each record
    # everything that can be wrong with the request is checked before a model or simulator is loaded
    cfg, where = config_from_args(args)
    cfg, tasks = eval_config.resolve_tasks(cfg)  # the tasks, resolved once
    horizons = cfg.exec_horizons
    from rdt.encoders import check_text_fits
    from rdt.lang import LanguageTable

    table = LanguageTable.load(cfg.lang) if cfg.lang else None
    lang = {t.name: table.get(t.language) for t in tasks} if table is not None else None
    policy = _load_policy(cfg)
    lang_path = cfg.lang
    if table is None:  # no --lang: encode the tasks' instructions once with the checkpoint's text encoder
        lang_path = str(encode_task_language(tasks, policy.text_encoder, Path(args.out), policy.device))
        table = LanguageTable.load(lang_path)
        lang = {t.name: table.get(t.language) for t in tasks}
    table.check_encoder(policy.text_encoder)
    model_cfg = policy.runner.config
    check_text_fits(table.hidden_size, model_cfg, lang_path, f"checkpoint {cfg.checkpoint}")
    for h in horizons:
        check_horizon(h, model_cfg.pred_horizon, what=where("exec_horizons"))
    stats = _training_stats(cfg, policy.pipeline)
    info = _run_info(cfg, lang_path, policy, stats)
    tracker = _wandb(cfg, policy.pipeline)
    try:
        for h in horizons:
            out = horizon_out(Path(args.out), h, horizons)
            summary = evaluate(
                policy,
                cfg.settings(tasks, h, policy.pipeline),
                out,
                lang,
                info=info,
                stats=stats,
                summary_name=args.summary_name,
            )
            o = summary["overall"]
            if cfg.tensorboard:
                log_success(Path(cfg.tensorboard), summary)
            if tracker is not None:
                tracker.log(summary)
            rate = "n/a" if o["success_rate"] is None else f"{100 * o['success_rate']:.1f}%"
            print(
                f"{cfg.suite} H={h}: {o['successes']}/{o['episodes'] - o['errors']} successes ({rate}), "
                f"{o['errors']} errors -> {out / args.summary_name}"
            )
    finally:
        if tracker is not None:
            tracker.finish()
    return 0


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
