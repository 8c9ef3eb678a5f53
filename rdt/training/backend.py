"""The training backend: one small interface over accelerate's DDP (the default) and DeepSpeed ZeRO stage 2
(``deepspeed: zero2``), so that the trainer has no branch on which one runs.

    backend = make_backend(cfg, out)       # builds the Accelerator (``backend.accelerator``)
    with backend.sync(model, last):        # gradients all-reduced on the last micro-batch of an optimizer step
        backend.backward(loss, accumulation)
    with backend.autocast():               # bf16 autocast for a model outside the prepared one (the EMA's)
    backend.save_optimizer(optimizer, folder) / backend.load_optimizer(optimizer, folder, trainer_state)

Under ZeRO-2 the engine does the accumulation, the clipping at max_grad_norm and the AdamW step at the last
micro-batch of each optimizer step (the optimizer calls of the trainer are then no-ops); its optimizer state
(partitioned over the processes) is saved with accelerate's save_state into checkpoint-<step>/deepspeed/, so such a
checkpoint resumes with the same number of processes only.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch

from rdt import train_config
from rdt.errors import UserError
from rdt.training.run_folder import DEEPSPEED_STATE, OPTIMIZER_FILE

#: how long a process waits at a collective: rank 0 alone writes each checkpoint and export (rdt-1b in fp32: about
#: 20 GB and 10 GB) while the other ranks wait at the next collective; NCCL's default of 10 minutes would kill the
#: job on a slow shared filesystem
COLLECTIVE_TIMEOUT = timedelta(hours=2)


def process_group_kwargs():
    """accelerate's process-group settings: the collective timeout, and gloo where there is no CUDA."""
    from accelerate.utils import InitProcessGroupKwargs

    return InitProcessGroupKwargs(backend="nccl" if torch.cuda.is_available() else "gloo", timeout=COLLECTIVE_TIMEOUT)


class DDP:
    """accelerate's default data parallelism: one process, or several (without CUDA over gloo)."""

    #: what a step with a non-finite gradient norm does to the weights
    nonfinite_update = "weights not updated"

    def __init__(self, cfg: train_config.TrainConfig, out: Path):
        self.precision = cfg.resolved_mixed_precision(torch.cuda.is_available())
        self.accelerator = self._accelerator(cfg, Path(out))

    def _accelerator(self, cfg: train_config.TrainConfig, out: Path):
        from accelerate import Accelerator

        # cpu=True without CUDA: several processes (WORLD_SIZE > 1) then use torch.distributed over gloo
        return Accelerator(
            mixed_precision=self.precision,
            cpu=not torch.cuda.is_available(),
            kwargs_handlers=[process_group_kwargs()] if int(os.environ.get("WORLD_SIZE", "1")) > 1 else [],
            **tracker_kwargs(cfg, out),
        )

    def sync(self, model: torch.nn.Module, last: bool) -> contextlib.AbstractContextManager:
        """Context of one micro-batch's forward/backward: gradients are all-reduced only when ``last``."""
        return contextlib.nullcontext() if last else self.accelerator.no_sync(model)

    def backward(self, loss: torch.Tensor, accumulation: int) -> None:
        """Backward of one micro-batch's loss, scaled so that the gradient is that of the effective batch's mean."""
        self.accelerator.backward(loss / accumulation)

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast when mixed precision is bf16, for models outside the prepared one (the EMA's)."""
        return self.accelerator.autocast()

    def save_optimizer(self, optimizer: torch.optim.Optimizer, folder: Path | None) -> None:
        """Write the optimizer state into checkpoint ``folder`` (None on the processes that do not write it); every
        process calls it."""
        if folder is not None:
            torch.save(optimizer.state_dict(), folder / OPTIMIZER_FILE)

    def load_optimizer(self, optimizer: torch.optim.Optimizer, folder: Path, state: dict[str, Any]) -> None:
        """Restore the optimizer state of checkpoint ``folder`` (``state``: its trainer_state.json)."""
        optimizer.load_state_dict(
            torch.load(folder / OPTIMIZER_FILE, map_location=self.accelerator.device, weights_only=True)
        )


class ZeRO2(DDP):
    """DeepSpeed ZeRO stage 2 through accelerate's DeepSpeedPlugin (needs a distributed launch)."""

    nonfinite_update = "DeepSpeed applied the update"

    def _accelerator(self, cfg: train_config.TrainConfig, out: Path):
        from accelerate import Accelerator

        if "LOCAL_RANK" not in os.environ:
            raise UserError(
                "run config key 'deepspeed' = 'zero2' partitions the optimizer state over the processes "
                "of a distributed launch (`accelerate launch --multi_gpu --num_processes N -m rdt train "
                "...`); this is a single process: set deepspeed: 'off'"
            )
        # the accumulation goes into the DeepSpeed config, so it is derived from the launch's WORLD_SIZE
        plugin = deepspeed_plugin(cfg, cfg.accumulation(int(os.environ.get("WORLD_SIZE", "1"))), self.precision)
        # without CUDA, DeepSpeed's CPU accelerator with torch.distributed over gloo; mixed precision is the
        # plugin's autocast, so accelerate's is off
        return Accelerator(
            mixed_precision="no",
            deepspeed_plugin=plugin,
            kwargs_handlers=[process_group_kwargs()],
            **tracker_kwargs(cfg, out),
        )

    def sync(self, model: torch.nn.Module, last: bool) -> contextlib.AbstractContextManager:
        # accelerate marks the last micro-batch as the accumulation boundary, where the engine all-reduces, clips
        # and steps
        return self.accelerator.accumulate(model)

    def backward(self, loss: torch.Tensor, accumulation: int) -> None:
        self.accelerator.backward(loss)  # the engine divides the loss by the accumulation itself

    def autocast(self) -> contextlib.AbstractContextManager:
        # the engine autocasts its own forward and accelerate's autocast is off
        return torch.autocast(self.accelerator.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def save_optimizer(self, optimizer: torch.optim.Optimizer, folder: Path | None) -> None:
        from accelerate.utils import broadcast_object_list

        # every process writes its partition of the optimizer state into rank 0's folder
        folder = Path(broadcast_object_list([folder])[0])
        self.accelerator.save_state(str(folder / DEEPSPEED_STATE))
        self.accelerator.wait_for_everyone()

    def load_optimizer(self, optimizer: torch.optim.Optimizer, folder: Path, state: dict[str, Any]) -> None:
        processes = self.accelerator.num_processes
        if int(state["num_processes"]) != processes:
            raise UserError(
                f"{folder}: written by {state['num_processes']} processes with deepspeed: zero2 "
                f"(optimizer state partitioned per process); resume it with {state['num_processes']} "
                f"processes, not {processes}"
            )
        self.accelerator.load_state(str(folder / DEEPSPEED_STATE))


def make_backend(cfg: train_config.TrainConfig, out: str | Path) -> DDP:
    """The backend of ``cfg.deepspeed``: ZeRO2 for ``zero2``, DDP otherwise."""
    return (ZeRO2 if cfg.deepspeed == "zero2" else DDP)(cfg, Path(out))


def deepspeed_plugin(cfg: train_config.TrainConfig, accumulation: int, precision: str):
    """accelerate's DeepSpeedPlugin for ``deepspeed: zero2``: ZeRO stage 2, gradient clipping at max_grad_norm,
    the derived accumulation and per_device_batch_size micro-batches. ``precision`` ``bf16`` = bf16 autocast in
    the engine's forward with fp32 weights and fp32 gradient reduction, as without DeepSpeed (DeepSpeed's own bf16
    mode would keep the model's weights, and so the EMA's source and the checkpoints, in bf16)."""
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        raise UserError(
            "run config key 'deepspeed' = 'zero2' needs the deepspeed package, which is not installed: "
            "`pip install deepspeed` (or set deepspeed: 'off')"
        ) from None
    from accelerate.utils import DeepSpeedPlugin

    plugin = DeepSpeedPlugin(
        zero_stage=2, gradient_accumulation_steps=accumulation, gradient_clipping=cfg.max_grad_norm
    )
    plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = cfg.per_device_batch_size
    if precision == "bf16":
        plugin.deepspeed_config["torch_autocast"] = {
            "enabled": True,
            "dtype": "bfloat16",
            "lower_precision_safe_modules": [],
        }
    return plugin


# ================================================================================================ trackers
def tracker_kwargs(cfg: train_config.TrainConfig, out: Path) -> dict[str, Any]:
    """Accelerator arguments for ``train.report_to``: W&B through accelerate's tracker; nothing otherwise (the
    TensorBoard files are MetricsLog's own)."""
    return {"log_with": "wandb", "project_dir": str(out)} if cfg.report_to == "wandb" else {}


def start_tracker(accelerator, cfg: train_config.TrainConfig, fingerprint: str) -> Callable | None:
    """Start the W&B run of ``train.report_to: wandb`` (one per training: each segment continues it; offline with
    WANDB_MODE=offline) and return the function that logs a row; None without a tracker."""
    if cfg.report_to != "wandb":
        return None
    name = cfg.run or "rdt"
    accelerator.init_trackers(
        os.environ.get("WANDB_PROJECT", "rdt-libero"),
        config=cfg.to_dict(),
        init_kwargs={
            "wandb": {
                "name": name,
                "id": f"{name}-{fingerprint}"[:64],
                "resume": "allow",
                "dir": os.environ.get("WANDB_DIR") or accelerator.project_dir,
            }
        },
    )
    return accelerator.log
