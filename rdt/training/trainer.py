"""The Trainer: one training run in one process of an accelerate launch. ``Trainer(cfg, out).run(until_step)``.

The recipe is described in rdt/training/command.py (the command's help). The samples come from
rdt.training.sampling (every draw seeded by the sample's global position), the distribution from
rdt.training.backend (DDP or ZeRO-2), AdamW, the LR schedule and the EMA from rdt.training.optim, the file names
from rdt.training.run_folder.
"""

from __future__ import annotations

import contextlib
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from rdt import statevec, train_config
from rdt.encoders import check_text_fits, check_vision_fits
from rdt.errors import UserError
from rdt.libero.mapping import ACTION_SLOTS
from rdt.training import optim
from rdt.training.backend import make_backend, start_tracker
from rdt.training.preemption import Preempted, catch_stop_signals, ignore_stop_signals
from rdt.training.run_folder import (
    RNG_FILE,
    SAMPLE_MSE_SLOTS,
    SCHEDULER_FILE,
    STATE_FILE,
    MetricsLog,
    checkpoint_dir,
    matching_checkpoints,
    prune_checkpoints,
    read_trainer_state,
)
from rdt.training.sampling import MicroBatchPositions, PositionedSamples, collate_positioned
from rdt.utils.atomic import atomic_dir, write_json
from rdt.utils.logs import now
from rdt.utils.progress import Progress


class Diverged(UserError):
    """Raised when ``max_nonfinite_steps`` consecutive optimizer steps had a non-finite gradient norm."""


class LossModel(nn.Module):
    """The runner behind a ``forward`` that returns the training loss, so DDP sees a forward call."""

    def __init__(self, runner: nn.Module):
        super().__init__()
        self.runner = runner

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        return self.runner.compute_loss(**inputs)


def initial_runner(cfg: train_config.TrainConfig):
    """The runner to start from: ``init_from`` (strict keys; its architecture must be the ``model`` preset) or a
    random initialisation from ``seed``."""
    from rdt.model.checkpoint import load_runner
    from rdt.model.config import RDTConfig
    from rdt.model.runner import build_runner

    preset = RDTConfig.preset(cfg.model)
    if cfg.init_from is None:
        return build_runner(preset, seed=cfg.seed)
    runner, _ = load_runner(cfg.init_from, weights="model")
    if runner.config.to_flat() != preset.to_flat():
        diff = sorted(k for k, v in preset.to_flat().items() if runner.config.to_flat().get(k) != v)
        raise UserError(
            f"init_from {cfg.init_from!r}: its config.json is not the {cfg.model!r} architecture "
            f"(differs in {', '.join(diff)}); set model to the checkpoint's preset"
        )
    return runner.train()


def rng_state() -> dict[str, Any]:
    """The global RNG states of this process (python, numpy, torch, cuda), in a form torch.save can write."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (np_state[0], np_state[1].tolist(), *np_state[2:]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate((state["python"][0], tuple(state["python"][1]), state["python"][2]))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


class Trainer:
    """One training run in one process of an accelerate launch. ``Trainer(cfg, out).run(until_step)``.

    The pieces are public so that tests can drive them: :meth:`accumulate` (forward/backward over one optimizer
    step's micro-batches), :meth:`optimizer_step` (clip, optimizer and LR-scheduler step, EMA update),
    :meth:`save_state`.
    """

    def __init__(self, cfg: train_config.TrainConfig, out: str | Path, resume: Path | None = None):
        from accelerate.utils import set_seed

        self.cfg, self.out = cfg, Path(out)
        self.backend = make_backend(cfg, self.out)
        self.accelerator, self.precision = self.backend.accelerator, self.backend.precision
        self.num_processes, self.rank = self.accelerator.num_processes, self.accelerator.process_index
        self.device = self.accelerator.device
        self.accumulation = cfg.accumulation(self.num_processes)
        self.fingerprint = cfg.fingerprint()
        set_seed(cfg.seed)
        lang = self._load_data()
        self._build_model(lang, resume)
        self.step = self.start_step = 0
        self.nonfinite_steps = 0  # consecutive optimizer steps with a non-finite gradient norm
        if resume is not None:
            self._resume(resume)
        self._last_saved = self.step

    # -------------------------------------------------------------------------------------- set-up
    def _load_data(self):
        """Frozen vision encoder, language table and the training and sample-MSE datasets; returns the table."""
        from rdt.data.dataset import LiberoDataset, split_episodes, transition_weights
        from rdt.data.stats import load_entry
        from rdt.encoders import load_vision_encoder
        from rdt.lang import LanguageTable
        from rdt.model.config import RDTConfig

        cfg = self.cfg
        vision_dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
        self.vision = load_vision_encoder(cfg.vision_encoder, device=self.device, dtype=vision_dtype)
        lang = LanguageTable.load(cfg.lang)
        lang.check_encoder(cfg.text_encoder)
        stats = load_entry(cfg.stats)
        train_eps, held_eps = split_episodes(cfg.data, cfg.heldout_episodes)
        self.sample_on = "held-out" if held_eps else "training"
        cached = cfg.cache_image_features
        chunk = RDTConfig.preset(cfg.model).pred_horizon  # the model's chunk (init_from must be this preset)
        common = dict(image_transform=None if cached else self.vision.preprocessor, frame_ids=cached, chunk_size=chunk)
        self.train_set = LiberoDataset(
            cfg.data,
            lang,
            stats,
            episodes=train_eps,
            cond_mask_prob=cfg.cond_mask_prob,
            state_noise_snr=cfg.state_noise_snr,
            image_aug=cfg.image_aug,
            state_norm=cfg.state_norm,
            **common,
        )
        self.sample_set = LiberoDataset(
            cfg.data,
            lang,
            stats,
            episodes=held_eps or train_eps,
            cond_mask_prob=0.0,
            state_noise_snr=None,
            image_aug=False,
            state_norm=cfg.state_norm,
            **common,
        )
        self.train_features = self.sample_features = None
        if cached:
            from rdt.data.features import FrameFeatures

            t0 = time.perf_counter()
            self.train_features = FrameFeatures.build(self.train_set, self.vision)
            self.sample_features = FrameFeatures.build(self.sample_set, self.vision)
            self.log(
                f"image features of {self.train_features.table.shape[0] + self.sample_features.table.shape[0]} "
                f"frame slots computed once in {time.perf_counter() - t0:.1f} s (cache_image_features)"
            )
        self.weights = (
            None
            if cfg.oversample_transitions is None
            else transition_weights(self.train_set, cfg.oversample_transitions)
        )
        return lang

    def _build_model(self, lang, resume: Path | None) -> None:
        """The runner (initial weights, or those of checkpoint ``resume``), the positioned samples, AdamW, the LR
        schedule and the EMA; the model and optimizer prepared by the backend."""
        from rdt.model.checkpoint import load_runner

        cfg = self.cfg
        runner = initial_runner(cfg) if resume is None else load_runner(resume, weights="model")[0].train()
        model = f"model {cfg.model!r}"
        check_text_fits(lang.hidden_size, runner.config, cfg.lang, model)
        check_vision_fits(self.vision, runner.config, model)
        self.runner = runner
        c = runner.config
        self.positions = PositionedSamples(
            self.train_set, cfg.seed, c.num_train_timesteps, (c.pred_horizon, c.action_dim), self.weights
        )
        self.sample_positions = PositionedSamples(
            self.sample_set, cfg.seed, c.num_train_timesteps, (c.pred_horizon, c.action_dim)
        )
        self.optimizer = optim.adamw(runner.parameters(), cfg)
        self.scheduler = optim.lr_schedule(self.optimizer, cfg)
        self.ema = optim.ema(runner, cfg)
        self.model, self.optimizer = self.accelerator.prepare(LossModel(runner), self.optimizer)
        self.ema.model.to(self.device)

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def log(self, message: str) -> None:
        if self.is_main:
            print(f"{now()} train: {message}", flush=True)

    # -------------------------------------------------------------------------------------- state
    def _resume(self, folder: Path) -> None:
        """Continue from a resumable checkpoint (the weights were loaded by the constructor): EMA, optimizer,
        LR scheduler, RNG states, step."""
        from rdt.model.checkpoint import load_runner

        state = read_trainer_state(folder)
        ema, _ = load_runner(folder, weights="ema")
        self.ema.load_state_dict(ema.state_dict(), optimization_step=int(state["ema_optimization_step"]))
        self.backend.load_optimizer(self.optimizer, folder, state)
        self.scheduler.load_state_dict(torch.load(folder / SCHEDULER_FILE, weights_only=True))
        rng = torch.load(folder / RNG_FILE, weights_only=True)
        if len(rng) == self.num_processes:
            set_rng_state(rng[self.rank])
        self.step = self.start_step = int(state["step"])
        if self.scheduler.last_epoch != self.step:
            raise UserError(
                f"{folder}: LR scheduler is at step {self.scheduler.last_epoch}, checkpoint at "
                f"{self.step} (corrupt checkpoint)"
            )

    def save_state(self) -> Path:
        """Write checkpoint-<step> (rank 0 only, atomically) and prune old ones; every process must call it."""
        from accelerate.utils import gather_object

        from rdt.model.checkpoint import save_checkpoint

        rng = gather_object([rng_state()]) if self.num_processes > 1 else [rng_state()]
        folder = checkpoint_dir(self.out, self.step)
        with contextlib.ExitStack() as stack:
            tmp = stack.enter_context(atomic_dir(folder)) if self.is_main else None
            if self.is_main:  # first: save_checkpoint replaces the whole folder
                save_checkpoint(tmp, self.runner, self.runner.config, ema_state_dict=self.ema.state_dict())
            self.backend.save_optimizer(self.optimizer, tmp)
            if self.is_main:
                torch.save(self.scheduler.state_dict(), tmp / SCHEDULER_FILE)
                torch.save(rng, tmp / RNG_FILE)
                write_json(
                    tmp / STATE_FILE,
                    {
                        "step": self.step,
                        "samples_seen": self.step * self.cfg.effective_batch_size,
                        "next_micro_batch": self.step * self.accumulation,
                        "num_processes": self.num_processes,
                        "accumulation": self.accumulation,
                        "ema_optimization_step": self.ema.optimization_step,
                        "fingerprint": self.fingerprint,
                        "config": self.cfg.to_dict(),
                        "time": time.time(),
                    },
                )
        self._last_saved = self.step
        if self.is_main:
            for gone in prune_checkpoints(
                self.out, self.fingerprint, self.cfg.checkpoints_total_limit, written=self.step
            ):
                self.log(f"pruned {gone.name} (checkpoints_total_limit={self.cfg.checkpoints_total_limit})")
        self.accelerator.wait_for_everyone()
        return folder

    # -------------------------------------------------------------------------------------- one step
    def data_iterator(self) -> Iterator[dict[str, Any]]:
        """This process's micro-batches from the current step on (rdt.training.sampling.MicroBatchPositions)."""
        sampler = MicroBatchPositions(
            self.step * self.accumulation, self.rank, self.num_processes, self.cfg.per_device_batch_size
        )
        workers = self.cfg.dataloader_num_workers
        loader = DataLoader(
            self.positions,
            batch_sampler=sampler,
            num_workers=workers,
            collate_fn=collate_positioned,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if workers else None,
            worker_init_fn=ignore_stop_signals,
        )
        return iter(loader)

    def model_inputs(self, batch: dict[str, Any], features=None) -> dict[str, torch.Tensor]:
        """A collated batch -> the keyword arguments of ``RDTRunner.compute_loss`` on this device. Image tokens
        come from the vision encoder, or from precomputed ``features`` when the batch carries frame ids."""
        dev = self.device
        if "frame_ids" in batch:
            img_tokens = features.views(batch["frame_ids"], batch["image_valid"])
        else:
            img_tokens = self.vision.encode_views(batch["images"].to(dev, non_blocking=True), batch["image_valid"])
        return {
            "lang_tokens": batch["lang"].to(dev),
            "lang_mask": batch["lang_mask"].to(dev),
            "img_tokens": img_tokens,
            "state_tokens": batch["state"].to(dev),
            "action_gt": batch["actions"].to(dev),
            "action_mask": batch["state_mask"].to(dev).unsqueeze(1),
            "ctrl_freqs": batch["ctrl_freq"].to(dev),
            "noise": batch["noise"].to(dev),
            "timesteps": batch["timestep"].to(dev),
        }

    def accumulate(self, micro_batches: Iterator[dict[str, Any]] | list[dict[str, Any]]) -> tuple[float, int]:
        """Forward/backward over ``accumulation`` micro-batches; gradients are all-reduced on the last one only
        (the backend's ``sync``), and the gradient is that of the mean loss over the effective batch.
        Returns (mean loss on this process, samples on this process)."""
        total, samples = 0.0, 0
        it = iter(micro_batches)
        for a in range(self.accumulation):
            batch = next(it)
            with self.backend.sync(self.model, last=a == self.accumulation - 1):
                with self.accelerator.autocast():
                    loss = self.model(**self.model_inputs(batch, self.train_features))
                self.backend.backward(loss, self.accumulation)
            total += float(loss.detach())
            samples += int(batch["state"].shape[0])
        return total / self.accumulation, samples

    def optimizer_step(self) -> tuple[float, float]:
        """Clip the gradient norm to ``max_grad_norm``, step AdamW, the LR schedule and the EMA.
        Returns (pre-clip gradient norm, LR used). A non-finite gradient skips the weight update.
        Under ZeRO-2 the engine has already clipped and stepped in :meth:`accumulate` (also on a non-finite
        norm); the norm is its pre-clip norm and the optimizer calls here are no-ops."""
        lr = self.scheduler.get_last_lr()[0]
        grad_norm = float(self.accelerator.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm))
        if np.isfinite(grad_norm):
            self.optimizer.step()
            self.nonfinite_steps = 0
        else:
            self._count_nonfinite(grad_norm)
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.ema.step(self.runner)
        return grad_norm, lr

    def _count_nonfinite(self, grad_norm: float) -> None:
        """Log a non-finite gradient norm at step + 1; the ``max_nonfinite_steps``-th in a row is :class:`Diverged`."""
        self.nonfinite_steps += 1
        self.log(f"step {self.step + 1}: non-finite gradient norm {grad_norm}; {self.backend.nonfinite_update}")
        limit = self.cfg.max_nonfinite_steps
        if limit and self.nonfinite_steps >= limit:
            first = self.step + 2 - self.nonfinite_steps
            raise Diverged(
                f"{self.out}: training diverged: {self.nonfinite_steps} consecutive optimizer steps "
                f"({first}-{self.step + 1}) had a non-finite gradient norm (max_nonfinite_steps="
                f"{limit}); nothing after step {self._last_saved} was saved or exported. "
                "Lower learning_rate or check the data and init_from weights"
            )

    @torch.no_grad()
    def sample_mse(self) -> dict[str, float]:
        """The sample MSE of the EMA weights over the action slots: predict each chunk (5 DPM-Solver steps, from
        the sample's fixed initial noise) for ``sample_batches`` batches of fixed positions of the held-out
        episodes; the squared error of every action slot averaged over the 64 steps and the samples
        (``sample_mse_<slot>``), and their mean (``sample_mse``). Unlike RDT's train/sample.py, which averages
        over every valid dim of the mask, the state-only slots (always 0 in the target) do not dilute it."""
        b = self.cfg.per_device_batch_size
        slots = torch.as_tensor(statevec.indices(ACTION_SLOTS))
        errors = []
        for i in range(self.cfg.sample_batches):
            inputs = self.model_inputs(self.sample_positions.batch(range(i * b, (i + 1) * b)), self.sample_features)
            with self.backend.autocast():
                pred = self.ema.model.predict_action(
                    inputs["lang_tokens"],
                    inputs["lang_mask"],
                    inputs["img_tokens"],
                    inputs["state_tokens"],
                    inputs["action_mask"],
                    inputs["ctrl_freqs"],
                    noise=inputs["noise"],
                )
            se = (pred.float() - inputs["action_gt"].float())[..., slots.to(pred.device)] ** 2  # (B,64,7)
            errors.append(se.mean(dim=1).cpu())  # (B,7)
        per_slot = torch.cat(errors).mean(dim=0)
        return {"sample_mse": float(per_slot.mean()), **{col: float(v) for col, v in zip(SAMPLE_MSE_SLOTS, per_slot)}}

    # -------------------------------------------------------------------------------------- loop
    def run(self, until_step: int) -> None:
        """Train from the current step to ``until_step`` and write checkpoint-<until_step>. A SIGTERM/SIGUSR1
        finishes the current optimizer step, saves it and raises :class:`Preempted`."""
        cfg = self.cfg
        self.log_settings(until_step)
        with catch_stop_signals() as stop, self._metrics_log() as metrics, self._progress(until_step) as progress:
            data = self.data_iterator()
            while self.step < until_step:
                t0 = time.perf_counter()
                self.model.train()
                loss, samples = self.accumulate(data)
                grad_norm, lr = self.optimizer_step()
                loss, samples, stopping = self._reduce(loss, samples, stop.signum is not None)
                dt = time.perf_counter() - t0
                row = {
                    "step": self.step,
                    "loss": loss,
                    "lr": lr,
                    "grad_norm": grad_norm,
                    "samples": samples,
                    "samples_per_s": samples / dt,
                    "step_time_s": dt,
                    "sample_mse": None,
                }
                if self.is_main:
                    self._record(row, metrics, progress, until_step)
                if self.step % cfg.checkpointing_period == 0 or self.step == until_step or stopping:
                    self.log(f"saved {self.save_state()}")
                if stopping:
                    signum = stop.signum or signal.SIGTERM
                    raise Preempted(signum, self.step, checkpoint_dir(self.out, self.step))

    def _reduce(self, loss: float, samples: int, stop: bool) -> tuple[float, int, bool]:
        """(mean loss, samples, whether any process was asked to stop) over all processes."""
        summed = self.accelerator.reduce(
            torch.tensor([loss, samples, float(stop)], device=self.device, dtype=torch.float64), "sum"
        )
        return float(summed[0]) / self.num_processes, int(summed[1]), bool(summed[2] > 0)

    def _record(self, row: dict[str, Any], metrics: MetricsLog, progress: Progress, until_step: int) -> None:
        """Main process: the sample MSE when it is due, the metrics row, the progress bar and the periodic line."""
        cfg = self.cfg
        if cfg.sample_period and self.step % cfg.sample_period == 0:
            row.update(self.sample_mse())
        metrics.write(row)
        progress.update(1, loss=row["loss"], lr=row["lr"])
        if self.step % cfg.log_period == 0 or self.step == until_step:
            extra = f" sample_mse {row['sample_mse']:.5f}" if row["sample_mse"] is not None else ""
            self.log(
                f"step {self.step} loss {row['loss']:.5f} lr {row['lr']:.3g} grad_norm {row['grad_norm']:.3g} "
                f"{row['samples_per_s']:.1f} samples/s{extra}"
            )

    @contextlib.contextmanager
    def _metrics_log(self) -> Iterator[MetricsLog | None]:
        """The main process's metrics.csv (and W&B run, with ``report_to: wandb``) for this segment."""
        tracker = start_tracker(self.accelerator, self.cfg, self.fingerprint)
        metrics = None
        try:
            if self.is_main:
                ahead = max((s for s, _ in matching_checkpoints(self.out, self.fingerprint)[0]), default=0)
                metrics = MetricsLog(self.out, self.step, keep_until=ahead, tracker=tracker)
            yield metrics
        finally:
            if metrics is not None:
                metrics.close()
            if tracker is not None:
                self.accelerator.end_training()

    def _progress(self, until_step: int) -> contextlib.AbstractContextManager:
        if self.is_main:
            return Progress(until_step, "train", unit="step", initial=self.step)
        return contextlib.nullcontext()

    def log_settings(self, until_step: int) -> None:
        """The batch formula, precision, model, optimizer, EMA and data of this segment, one line each."""
        cfg = self.cfg
        self.log(cfg.batch_formula(self.num_processes))
        self.log(
            f"mixed precision {self.precision}; model {cfg.model} "
            f"({self.runner.num_parameters() / 1e6:.1f}M parameters) from "
            f"{'checkpoint-' + str(self.start_step) if self.start_step else (cfg.init_from or 'random init')}"
        )
        self.log(
            f"AdamW lr {cfg.learning_rate:g} (warmup {cfg.lr_warmup_steps} steps, then constant), betas "
            f"({cfg.adam_beta1}, {cfg.adam_beta2}), weight decay {cfg.weight_decay}, clip {cfg.max_grad_norm}; "
            f"EMA power {cfg.ema_power} max {cfg.ema_max}"
        )
        self.log(
            f"{len(self.train_set)} training samples ({len(self.train_set.episode_ids)} episodes); sample MSE on "
            f"{len(self.sample_set.episode_ids)} {self.sample_on} episodes; steps {self.step} -> {until_step}"
        )
