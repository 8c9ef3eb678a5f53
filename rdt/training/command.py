"""Fine-tune RDT with HuggingFace accelerate up to a given optimizer step (one training segment).

    python -m rdt train --config RUN.yaml --until-step S [--previous-export DIR/export/step-P] --out DIR
    accelerate launch --multi_gpu --num_processes 8 -m rdt train --config RUN.yaml --until-step S --out DIR
    (on a CPU-only machine the same launch line runs the processes over gloo)

RUN.yaml holds every setting (rdt/train_config.py documents each; the defaults are RDT-1B's fine-tuning recipe).
The training's identity (``TrainConfig.fingerprint()``: settings, data files and training code) decides what is
reused. The segment resumes from the newest checkpoint in DIR/checkpoints of the same identity whose step is <= S
(or starts from the initial weights), trains to step S, writes DIR/checkpoints/checkpoint-S and exports an
evaluation checkpoint DIR/export/step-S (config.json + model.safetensors + ema/model.safetensors + pipeline.json
with the identity, never pruned). If checkpoint-S already exists with the same identity, it only (re)exports.
``--previous-export DIR/export/step-P`` names the export the segment continues (the workflow's declared input); it
must carry the same identity.

The recipe: effective batch = per-device batch x gradient accumulation x processes (the accumulation is derived at
launch); AdamW with fp32 master weights (bf16 autocast on GPU); gradient-norm clipping every optimizer step (the
pre-clip norm is logged); linear LR warmup then constant, stepped once per optimizer step; EMA (RDT's schedule,
fp32) updated once per optimizer step; frozen encoders (image tokens computed on the fly by the vision encoder,
language from the precomputed table). Every sample's random draws (which step, condition masking, state noise,
augmentation, diffusion noise and timestep) are seeded by (seed, its global sample position), so the trajectory
does not depend on the process count or the data-loading workers, and a resumed run continues the same stream.

Outputs in DIR: metrics.csv (step, loss, lr, grad_norm, samples, samples_per_s, step_time_s, sample_mse; one row
per optimizer step), tensorboard/ (when tensorboard is installed; ``tensorboard --logdir results``; with
``report_to: wandb`` the same rows also go to Weights & Biases), checkpoints/checkpoint-<step>/ (resumable:
weights, EMA, optimizer, LR scheduler, RNG states, data position, step, settings fingerprint), export/step-<S>/.
SIGTERM or SIGUSR1 (preemption): the current optimizer step is finished, a checkpoint is saved, and the command
exits with status 128 + signal number. Killing the ``accelerate launch`` that started the trainer does the same
(the trainer asks for SIGTERM when its launcher dies). DIR/.train.lock keeps a second trainer out of the run folder;
rows of metrics.csv that a segment restarting below them replaces are kept in metrics.history.csv.

``deepspeed: zero2`` runs the same recipe on DeepSpeed ZeRO stage 2 (accelerate's DeepSpeedPlugin): the engine
does the accumulation, the clipping at max_grad_norm and the AdamW step at the last micro-batch of each optimizer
step; its optimizer state (partitioned over the processes) is saved with accelerate's save_state into
checkpoint-<step>/deepspeed/, so such a checkpoint resumes with the same number of processes only.

This module is the command (one segment: resume, train, export); the pieces are beside it in rdt/training/ (run
folder, sample addressing, backend, optimizer, preemption, trainer). The trainer (and torch) is imported when a
segment runs, not when the command's --help is printed.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from rdt import train_config
from rdt.errors import UserError
from rdt.layout import export_dir
from rdt.training.preemption import Preempted, stop_with_launcher
from rdt.training.run_folder import (
    checkpoint_dir,
    find_resume,
    matching_checkpoints,
    read_trainer_state,
    run_lock,
)
from rdt.utils.files import read_json


# ================================================================================================ export
def export_checkpoint(
    cfg: train_config.TrainConfig, out: Path, step: int, run: str, identity: str | None = None
) -> Path:
    """Write DIR/export/step-<step> from checkpoint-<step>: config.json, model.safetensors,
    ema/model.safetensors (the original layout) and pipeline.json (docs/formats.md §5) with the training's
    ``identity`` (settings, data and code: ``cfg.fingerprint()``), the code part of it and the training data."""
    from rdt.data import open_training_file
    from rdt.data.stats import load_entry
    from rdt.model.checkpoint import load_runner, save_checkpoint

    source = checkpoint_dir(out, step)
    runner, _ = load_runner(source, weights="model")
    ema, _ = load_runner(source, weights="ema")
    with open_training_file(cfg.data) as f:
        attrs = {k: f.attrs[k] for k in ("image_size", "control_frequency", "action_space")}
        state_slots = json.loads(f.attrs.get("state_slots", "null"))  # None: a file from before issue 13
        try:
            created = json.loads(f.attrs.get("created_by", "{}"))
        except (TypeError, ValueError):
            created = {}
    pipeline = {
        "text_encoder": cfg.text_encoder,
        "vision_encoder": cfg.vision_encoder,
        "image_size": int(attrs["image_size"]),
        "control_frequency": int(attrs["control_frequency"]),
        "action_space": str(attrs["action_space"]),
        "step": step,
        "run": run,
        "identity": identity or cfg.fingerprint(),
        "train_code": cfg.training_code(),
        "suite": created.get("suite"),
        "tasks": created.get("tasks"),
        "data": str(cfg.data),
        "dataset": created.get("dataset"),
        "state_slots": state_slots,
        "dataset_stat": load_entry(cfg.stats),
        "state_norm": cfg.state_norm,
    }
    return save_checkpoint(
        export_dir(out, step), runner, runner.config, ema_state_dict=ema.state_dict(), pipeline=pipeline
    )


# ================================================================================================ command
def check_previous_export(folder: str | Path, identity: str, until_step: int) -> int:
    """The step of the export that this segment continues (the segment's declared input), after checking that it
    was made by this training (same identity: settings, data and code) at an earlier step."""
    from rdt.model.checkpoint import PIPELINE_FILE

    pipeline = read_json(Path(folder) / PIPELINE_FILE, "not found (expected an export of `rdt train`)")
    if pipeline.get("identity") != identity:
        raise UserError(
            f"{folder}: made by a training of identity {pipeline.get('identity')}, this segment's is "
            f"{identity} (other settings, data or training code); a segment only continues an export "
            "of its own training: rerun the earlier segments (snakemake does this when their params "
            "changed)"
        )
    step = int(pipeline.get("step", -1))
    if not 0 < step < until_step:
        raise UserError(f"{folder}: export of step {step}; expected a step before --until-step {until_step}")
    return step


def train_segment(
    cfg: train_config.TrainConfig, until_step: int, out: str | Path, previous_export: str | Path | None = None
) -> Path:
    """Train to ``until_step`` and export it; returns the export folder (on every process; only rank 0 writes).

    The training's identity (``cfg.fingerprint()``: settings, data files and training code) decides what may be
    reused: a checkpoint-<until_step> of the same identity is only exported again; otherwise the segment resumes the
    newest checkpoint of the same identity at or before ``until_step`` (checkpoints of another identity, e.g. made
    by other code, are never resumed or exported). ``previous_export`` is the export this segment continues (the
    workflow's declared input): it must carry the same identity. Its resumable twin is checkpoint-<its step>; if
    retention pruned that, the newest earlier checkpoint of the same identity (or the initial weights) is resumed
    and the same trajectory is recomputed up to it (every draw is seeded by the sample position)."""
    out = Path(out)
    if until_step < 1:
        raise UserError(f"--until-step {until_step}: expected a positive optimizer step")
    from rdt.training.trainer import Trainer  # torch: imported when a segment runs, not for --help

    identity = cfg.fingerprint()
    run = cfg.run or out.name
    rank = int(os.environ.get("RANK", "0"))
    previous = None if previous_export is None else check_previous_export(previous_export, identity, until_step)
    match, stale = matching_checkpoints(out, identity)
    for folder in stale:
        if rank == 0:
            print(
                f"train: ignoring {folder} (another training: identity "
                f"{read_trainer_state(folder).get('fingerprint')} != {identity})",
                flush=True,
            )
    if any(step == until_step for step, _ in match):
        if rank == 0:
            print(
                f"train: checkpoint-{until_step} exists with these settings and code (identity {identity}); "
                "exporting it",
                flush=True,
            )
            export_checkpoint(cfg, out, until_step, run, identity)
        return export_dir(out, until_step)
    resume = find_resume(out, identity, until_step)
    if rank == 0 and previous is not None and (resume is None or resume[0] < previous):
        print(
            f"train: checkpoint-{previous} (the resumable state of {previous_export}) is gone (retention); "
            f"recomputing the same trajectory from {resume[1].name if resume else 'the start'}",
            flush=True,
        )
    trainer = Trainer(cfg, out, resume=None if resume is None else resume[1])
    trainer.run(until_step)
    if trainer.is_main:
        folder = export_checkpoint(cfg, out, until_step, run, identity)
        trainer.log(f"exported {folder} (identity {identity})")
    trainer.accelerator.wait_for_everyone()
    return export_dir(out, until_step)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="RUN.yaml with the training settings (see rdt/train_config.py)")
    p.add_argument(
        "--until-step",
        type=int,
        required=True,
        help="train up to this optimizer step; writes checkpoint-S and export/step-S",
    )
    p.add_argument("--out", required=True, help="run folder (checkpoints/, export/, metrics.csv)")
    p.add_argument(
        "--previous-export",
        metavar="DIR",
        help="the export this segment continues (the workflow's declared input); it must come from the "
        "same training (identity in its pipeline.json)",
    )


#: OpenMP's wait policy for the trainer's threads, set before torch loads unless the environment sets one: threads
#: that wait for a descheduled sibling yield the core instead of spinning. bench/busy_cpu.py, tiny step at batch 32
#: on 2 cores beside one busy process: 2 threads 0.141 s alone -> 0.575 s busy (4.1x) with the default policy,
#: 0.190 s -> 0.270 s (1.4x) with PASSIVE; 1 thread 0.237 s -> 0.249 s
OMP_WAIT_POLICY = "PASSIVE"


def main(args: argparse.Namespace) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", OMP_WAIT_POLICY)  # torch (and its OpenMP runtime) is not loaded yet
    cfg = train_config.load(args.config)
    stop_with_launcher()
    try:
        with run_lock(args.out):
            train_segment(cfg, args.until_step, args.out, previous_export=args.previous_export)
    except Preempted as e:
        print(f"train: {e}", flush=True)
        return 128 + int(e.signum)
    except Exception as e:
        if type(e).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError (CUDA), without importing torch here
            raise UserError(cuda_oom_message(cfg, e)) from e
        raise
    return 0


def cuda_oom_message(cfg: train_config.TrainConfig, error: BaseException) -> str:
    """What to change when a training step does not fit in GPU memory (the effective batch need not change)."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    zero2 = "" if cfg.deepspeed == "zero2" else "; or train.deepspeed: zero2 shards the optimizer state over the GPUs"
    return (
        f"CUDA out of memory at train.per_device_batch_size {cfg.per_device_batch_size} (effective batch "
        f"{cfg.effective_batch_size}): lower train.per_device_batch_size; gradient accumulation grows so that the "
        f"effective batch stays {cfg.effective_batch_size}{zero2}. ({first})"
    )
