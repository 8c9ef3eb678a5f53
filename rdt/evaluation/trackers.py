"""Where an evaluation's success goes as it finishes, besides summary.json: TensorBoard scalars at the checkpoint's
step (``tensorboard``: beside the training curves) and Weights & Biases (``report_to: wandb``).

W&B: one run per evaluation job (a checkpoint at its horizons; id :func:`wandb_run_id`, ``resume="allow"``: a rerun
of the job continues it), ``job_type="evaluate"``, in the group of the training's own W&B run (its id
``<run>-<identity>``, as rdt.training.backend.start_tracker names it). Not one W&B run per evaluated run: its jobs
run in parallel, and a W&B run takes one writer at a time. Evaluations of several checkpoints finish in
any order, so the metrics ``success/H<h>`` and ``episodes/H<h>`` are plotted against the custom x-axis
``checkpoint_step`` (``define_metric``), not W&B's own step. Both trackers are optional, as training's are.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from rdt.errors import UserError
from rdt.utils.hashing import settings_key

#: the x-axis of the evaluation metrics in W&B
STEP_METRIC = "checkpoint_step"
DEFAULT_PROJECT = "rdt-libero"  # as training's (rdt.training.backend.start_tracker)

log = logging.getLogger(__name__)


def metrics(summary: dict) -> dict[str, float]:
    """The logged values of one horizon's summary: success rate (when any episode ran without an error) and the
    episodes that count."""
    o, h = summary["overall"], int(summary["horizon"])
    out = {f"episodes/H{h}": o["episodes"] - o["errors"]}
    if o["success_rate"] is not None:
        out[f"success/H{h}"] = o["success_rate"]
    return out


def log_success(folder: Path, summary: dict) -> bool:
    """The summary's success rate (and episode count) as TensorBoard scalars at its checkpoint step; False when
    tensorboard is not installed (as training's metrics, it is optional)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("tensorboard is not installed: --tensorboard %s skipped", folder)
        return False
    step = int(summary.get("step") or 0)
    with SummaryWriter(str(folder)) as writer:
        for tag, value in sorted(metrics(summary).items(), reverse=True):  # success first
            writer.add_scalar(tag, value, step)
    return True


def training_run_id(run: str | None, identity: str) -> str:
    """The W&B run id of a training (rdt.training.backend.start_tracker: ``f"{name}-{fingerprint}"[:64]`` with the
    run name and the training identity that its exports record in pipeline.json as ``run`` and ``identity``)."""
    return f"{run or 'rdt'}-{identity}"[:64]


def wandb_run_id(run: str, group: str | None, step: int, horizons: list[int]) -> str:
    """The W&B run id of one evaluation job: ``run``'s checkpoint ``step`` of one training (``group``) at
    ``horizons``; stable, so that a rerun of the job continues its W&B run."""
    return f"eval-{settings_key([run, group, int(step), sorted(horizons)])}"


class WandbLog:
    """The W&B run of one evaluation command: :meth:`log` sends a horizon's summary as it finishes."""

    def __init__(
        self,
        project: str | None,
        group: str | None,
        run: str,
        step: int,
        horizons: list[int],
        config: dict | None = None,
    ):
        try:
            import wandb
        except ImportError:
            raise UserError(
                "report_to: wandb (--report-to wandb) needs the wandb package, which is not installed: "
                "`pip install wandb` (or report to none; summary.json is written anyway)"
            ) from None
        self.run = wandb.init(
            project=project or os.environ.get("WANDB_PROJECT", DEFAULT_PROJECT),
            group=group,
            job_type="evaluate",
            name=f"eval-{run}-step-{step}",
            id=wandb_run_id(run, group, step, horizons),
            resume="allow",
            config=config,
            dir=os.environ.get("WANDB_DIR") or None,
        )
        self.run.define_metric(STEP_METRIC)
        for prefix in ("success", "episodes"):
            self.run.define_metric(f"{prefix}/*", step_metric=STEP_METRIC)

    def log(self, summary: dict) -> None:
        self.run.log({STEP_METRIC: int(summary.get("step") or 0), **metrics(summary)})

    def finish(self) -> None:
        self.run.finish()


def training_group(pipeline: dict) -> str | None:
    """The W&B group of an export's evaluations: the id of its training's W&B run (None for a checkpoint made
    elsewhere, without pipeline.json identity)."""
    identity = pipeline.get("identity")
    return training_run_id(pipeline.get("run"), identity) if identity else None
