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
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import random
import shutil
import signal
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from rdt import statevec, train_config
from rdt.errors import UserError
from rdt.libero.mapping import ACTION_SLOTS
from rdt.utils.atomic import atomic_dir, write_json, write_text
from rdt.utils.logs import now
from rdt.utils.progress import Progress

CHECKPOINTS, EXPORT, METRICS = "checkpoints", "export", "metrics.csv"
METRICS_HISTORY = "metrics.history.csv"     # rows set aside when a segment restarts below them (never deleted)
STATE_FILE, OPTIMIZER_FILE, SCHEDULER_FILE, RNG_FILE = ("trainer_state.json", "optimizer.pt", "scheduler.pt",
                                                        "rng_states.pt")
DEEPSPEED_STATE = "deepspeed"      # checkpoint subfolder written by accelerate's save_state under deepspeed: zero2
#: the action slots of the LIBERO mapping, whose held-out sample error is logged (the mean and per slot)
SAMPLE_MSE_SLOTS = tuple(f"sample_mse_{slot}" for slot in ACTION_SLOTS)
METRIC_COLUMNS = ("step", "loss", "lr", "grad_norm", "samples", "samples_per_s", "step_time_s",
                  "sample_mse") + SAMPLE_MSE_SLOTS
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class Diverged(UserError):
    """Raised when ``max_nonfinite_steps`` consecutive optimizer steps had a non-finite gradient norm."""


class Preempted(Exception):
    """Raised after the checkpoint of a run stopped by a signal has been written."""

    def __init__(self, signum: int, step: int, folder: Path):
        super().__init__(f"stopped by signal {signal.Signals(signum).name} at step {step}; resumable checkpoint "
                         f"{folder}")
        self.signum = signum


# ================================================================================================ checkpoints
def checkpoint_dir(out: Path, step: int) -> Path:
    return Path(out) / CHECKPOINTS / f"checkpoint-{step}"


def export_dir(out: Path, step: int) -> Path:
    return Path(out) / EXPORT / f"step-{step}"


def list_checkpoints(out: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (those with a trainer state file) as (step, folder), oldest first."""
    found = []
    for folder in (Path(out) / CHECKPOINTS).glob("checkpoint-*"):
        suffix = folder.name.split("-", 1)[1]
        if suffix.isdigit() and (folder / STATE_FILE).is_file():
            found.append((int(suffix), folder))
    return sorted(found)


def read_trainer_state(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((Path(folder) / STATE_FILE).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{folder / STATE_FILE}: unreadable trainer state ({e})") from None


def matching_checkpoints(out: Path, fingerprint: str) -> tuple[list[tuple[int, Path]], list[Path]]:
    """(checkpoints trained with settings ``fingerprint``, stale ones trained with other settings)."""
    match, stale = [], []
    for step, folder in list_checkpoints(out):
        (match if read_trainer_state(folder).get("fingerprint") == fingerprint else stale).append((step, folder))
    return match, [f for _, f in stale]


def find_resume(out: Path, fingerprint: str, until_step: int) -> tuple[int, Path] | None:
    """The newest checkpoint with matching settings and step <= ``until_step``; None = start from scratch."""
    match, _ = matching_checkpoints(out, fingerprint)
    usable = [(s, f) for s, f in match if s <= until_step]
    return usable[-1] if usable else None


def prune_checkpoints(out: Path, fingerprint: str, limit: int, written: int | None = None) -> list[Path]:
    """Delete the oldest matching checkpoints beyond ``limit`` and return the deleted folders.

    ``written`` is the step of the checkpoint just saved: it is always kept, and only matching checkpoints of
    earlier steps are candidates, so that ``limit`` - 1 of those stay next to it. Checkpoints of later steps (left
    by a segment that went further, e.g. before the segment boundaries were re-planned) are never deleted by a
    segment that ends below them: they hold training progress this segment did not reproduce. Without ``written``,
    the newest ``limit`` are kept. Stale checkpoints (other settings) and exports are left alone."""
    match, _ = matching_checkpoints(out, fingerprint)
    limit = max(limit, 1)
    if written is None:
        doomed = [f for _, f in match[:-limit]]
    else:
        earlier = [f for s, f in match if s < written]
        doomed = earlier[:max(len(earlier) - (limit - 1), 0)]
    for folder in doomed:
        shutil.rmtree(folder)
    return doomed


def stats_entry(path: str | Path) -> dict[str, Any]:
    """The dataset entry of a dataset_stat.json (rdt.data.stats.load_entry: its only entry, or ``libero``)."""
    from rdt.data.stats import load_entry

    return load_entry(path)


def export_checkpoint(cfg: train_config.TrainConfig, out: Path, step: int, run: str,
                      identity: str | None = None) -> Path:
    """Write DIR/export/step-<step> from checkpoint-<step>: config.json, model.safetensors,
    ema/model.safetensors (the original layout) and pipeline.json (docs/formats.md §5) with the training's
    ``identity`` (settings, data and code: ``cfg.fingerprint()``), the code part of it and the training data."""
    from rdt.data import open_training_file
    from rdt.model.checkpoint import load_runner, save_checkpoint

    source = checkpoint_dir(out, step)
    runner, _ = load_runner(source, weights="model")
    ema, _ = load_runner(source, weights="ema")
    with open_training_file(cfg.data) as f:
        attrs = {k: f.attrs[k] for k in ("image_size", "control_frequency", "action_space")}
        state_slots = json.loads(f.attrs.get("state_slots", "null"))   # None: a file from before issue 13
        try:
            created = json.loads(f.attrs.get("created_by", "{}"))
        except (TypeError, ValueError):
            created = {}
    pipeline = {"text_encoder": cfg.text_encoder, "vision_encoder": cfg.vision_encoder,
                "image_size": int(attrs["image_size"]), "control_frequency": int(attrs["control_frequency"]),
                "action_space": str(attrs["action_space"]), "step": step, "run": run,
                "identity": identity or cfg.fingerprint(), "train_code": cfg.training_code(),
                "suite": created.get("suite"), "tasks": created.get("tasks"), "data": str(cfg.data),
                "dataset": created.get("dataset"), "state_slots": state_slots,
                "dataset_stat": stats_entry(cfg.stats)}
    return save_checkpoint(export_dir(out, step), runner, runner.config, ema_state_dict=ema.state_dict(),
                           pipeline=pipeline)


# ================================================================================================ data
def position_seeds(seed: int, position: int) -> tuple[int, int, int]:
    """Three independent 63-bit seeds for the sample at global ``position``: the step draw, the dataset's own
    draws (masking, noise, augmentation) and the diffusion noise/timestep."""
    a, b, c = np.random.SeedSequence([int(seed), int(position)]).generate_state(3, np.uint64)
    return int(a) >> 1, int(b) >> 1, int(c) >> 1


class PositionedSamples(Dataset):
    """Training samples addressed by global sample position p = 0, 1, 2, ... (positions are never reused).

    Sample p is dataset index ``draw(p)``: uniform over all steps (or by ``weights``), drawn with replacement by a
    generator seeded from (seed, p), as RDT draws a random step per sample. The dataset's random draws use torch's
    RNG seeded from (seed, p); the diffusion ``noise`` (64,128) and ``timestep`` come from a third seed. Each
    sample also carries its ``position``.
    """

    def __init__(self, dataset: Dataset, seed: int, num_train_timesteps: int, action_shape: tuple[int, int],
                 weights: np.ndarray | None = None):
        self.dataset, self.seed = dataset, int(seed)
        self.num_train_timesteps, self.action_shape = int(num_train_timesteps), tuple(action_shape)
        w = np.ones(len(dataset)) if weights is None else np.asarray(weights, dtype=np.float64)
        self.cumulative = np.cumsum(w)

    def index_of(self, position: int) -> int:
        s_draw, _, _ = position_seeds(self.seed, position)
        u = np.random.default_rng(s_draw).random() * self.cumulative[-1]
        return int(min(np.searchsorted(self.cumulative, u, side="right"), len(self.cumulative) - 1))

    def __len__(self) -> int:            # positions are unbounded; the sampler decides which are read
        return 2 ** 62

    def __getitem__(self, position: int) -> dict[str, Any]:
        _, s_data, s_noise = position_seeds(self.seed, position)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s_data)
            sample = self.dataset[self.index_of(position)]
        gen = torch.Generator().manual_seed(s_noise)
        sample["noise"] = torch.randn(self.action_shape, generator=gen)
        sample["timestep"] = int(torch.randint(0, self.num_train_timesteps, (), generator=gen))
        sample["position"] = int(position)
        return sample


def collate_positioned(samples: list[dict[str, Any]]) -> dict[str, Any]:
    from rdt.data.dataset import collate

    batch = collate(samples)
    batch["noise"] = torch.stack([s["noise"] for s in samples])
    batch["timestep"] = torch.tensor([s["timestep"] for s in samples], dtype=torch.long)
    batch["position"] = torch.tensor([s["position"] for s in samples], dtype=torch.long)
    return batch


class MicroBatchPositions(Sampler):
    """Infinite micro-batches of sample positions for one process.

    Micro-batch m (counted over the whole run, m = optimizer_step x accumulation + a) of process r holds the
    positions ``(m x P + r) x B ... + B - 1`` (P processes, B per device). So optimizer step n consumes exactly
    positions n x E ... (n+1) x E - 1 (E = effective batch) over all processes, and resuming at step n restarts
    at micro-batch n x accumulation: the data position is a function of the step.
    """

    def __init__(self, first_micro_batch: int, rank: int, num_processes: int, per_device: int):
        self.first, self.rank, self.procs, self.per_device = first_micro_batch, rank, num_processes, per_device

    def __iter__(self) -> Iterator[list[int]]:
        m = self.first
        while True:
            base = (m * self.procs + self.rank) * self.per_device
            yield list(range(base, base + self.per_device))
            m += 1


def _ignore_stop_signals(worker_id: int) -> None:
    """Data workers ignore SIGTERM/SIGUSR1: a cluster signals every process of the job, and the training process
    still needs its workers to finish the current optimizer step before it saves the checkpoint."""
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)


# ================================================================================================ model
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
        raise UserError(f"init_from {cfg.init_from!r}: its config.json is not the {cfg.model!r} architecture "
                        f"(differs in {', '.join(diff)}); set model to the checkpoint's preset")
    return runner.train()


def deepspeed_plugin(cfg: train_config.TrainConfig, accumulation: int, precision: str):
    """accelerate's DeepSpeedPlugin for ``deepspeed: zero2``: ZeRO stage 2, gradient clipping at max_grad_norm,
    the derived accumulation and per_device_batch_size micro-batches. ``precision`` ``bf16`` = bf16 autocast in
    the engine's forward with fp32 weights and fp32 gradient reduction, as without DeepSpeed (DeepSpeed's own bf16
    mode would keep the model's weights, and so the EMA's source and the checkpoints, in bf16)."""
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        raise UserError("run config key 'deepspeed' = 'zero2' needs the deepspeed package, which is not installed: "
                        "`pip install deepspeed` (or set deepspeed: 'off')") from None
    from accelerate.utils import DeepSpeedPlugin

    plugin = DeepSpeedPlugin(zero_stage=2, gradient_accumulation_steps=accumulation,
                             gradient_clipping=cfg.max_grad_norm)
    plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = cfg.per_device_batch_size
    if precision == "bf16":
        plugin.deepspeed_config["torch_autocast"] = {"enabled": True, "dtype": "bfloat16",
                                                     "lower_precision_safe_modules": []}
    return plugin


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {"python": random.getstate(), "numpy": (np_state[0], np_state[1].tolist(), *np_state[2:]),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate((state["python"][0], tuple(state["python"][1]), state["python"][2]))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


# ================================================================================================ metrics
class MetricsLog:
    """DIR/metrics.csv, one row per optimizer step, flushed per row. TensorBoard scalars when it is installed.

    A segment that starts at ``start_step`` below rows already in the file (a run killed after its last
    checkpoint, or a segment ending below checkpoints of a run that went further) loses no row: the rows after
    ``start_step`` are first appended to DIR/metrics.history.csv (with the time they were set aside), then
    removed from metrics.csv; on :meth:`close` those of them beyond the last step this segment wrote and up to
    ``keep_until`` (the newest checkpoint of the same settings, whose trajectory wrote them) go back into
    metrics.csv, so a segment that retrains steps 1-10 of a finished 30-step run leaves 30 rows."""

    def __init__(self, out: Path, start_step: int, keep_until: int = 0, tracker=None):
        self.tracker = tracker      # train.report_to: wandb -> accelerator.log(values, step=step)
        self.path = Path(out) / METRICS
        self.history = Path(out) / METRICS_HISTORY
        self.keep_until, self.last_step = int(keep_until), int(start_step)
        rows, fields = [], list(METRIC_COLUMNS)
        if self.path.is_file():
            with open(self.path, newline="") as f:
                reader = csv.DictReader(f)
                rows = [r for r in reader if r.get("step", "").isdigit()]
                fields = list(reader.fieldnames or fields)
        kept = [r for r in rows if int(r["step"]) <= start_step]
        self.set_aside = [r for r in rows if int(r["step"]) > start_step]
        if self.set_aside:
            self._append_history(fields, self.set_aside)
        write_text(self.path, _metrics_text(kept))
        self.file = open(self.path, "a", newline="")
        self.writer = csv.writer(self.file)
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(Path(out) / "tensorboard"), purge_step=start_step + 1)
        except ImportError:
            pass

    def _append_history(self, fields: list[str], rows: list[dict[str, str]]) -> None:
        """Append ``rows`` with their own columns (those of the metrics.csv they came from) and the time, fsynced;
        rows whose columns differ from an existing history file's go to metrics.history.<k>.csv."""
        header = [*fields, "set_aside_time"]
        path, k = self.history, 1
        while path.is_file() and path.open(newline="").readline().rstrip("\r\n") != ",".join(header):
            k += 1
            path = self.history.with_name(f"{self.history.stem}.{k}.csv")
        new_file = not path.is_file()
        now = f"{time.time():.0f}"
        with open(path, "a", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            if new_file:
                w.writerow(header)
            w.writerows([[r.get(c) or "" for c in fields] + [now] for r in rows])
            f.flush()
            os.fsync(f.fileno())

    def write(self, row: dict[str, Any]) -> None:
        try:
            self.writer.writerow([_csv_value(row.get(c)) for c in METRIC_COLUMNS])
            self.file.flush()
        except OSError as e:
            raise OSError(e.errno, e.strerror, str(self.path)) from e
        self.last_step = int(row["step"])
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and v is not None:
                    self.tb.add_scalar(f"train/{k}", v, row["step"])
        if self.tracker is not None:
            self.tracker({f"train/{k}": v for k, v in row.items() if k != "step" and v is not None}, step=row["step"])

    def close(self) -> None:
        self.file.close()
        back = [r for r in self.set_aside if self.last_step < int(r["step"]) <= self.keep_until]
        if back:          # rows of the trajectory that reached checkpoint-<keep_until>, beyond what this one wrote
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if r.get("step", "").isdigit()]
            write_text(self.path, _metrics_text(rows + back))
        if self.tb is not None:
            self.tb.close()


def tracker_kwargs(cfg: train_config.TrainConfig, out: Path) -> dict[str, Any]:
    """Accelerator arguments for ``train.report_to``: W&B through accelerate's tracker; nothing otherwise (the
    TensorBoard files are MetricsLog's own)."""
    return {"log_with": "wandb", "project_dir": str(out)} if cfg.report_to == "wandb" else {}


def start_tracker(accelerator, cfg: train_config.TrainConfig, fingerprint: str):
    """Start the W&B run of ``train.report_to: wandb`` (one per training: each segment continues it; offline with
    WANDB_MODE=offline) and return the function that logs a row; None without a tracker."""
    if cfg.report_to != "wandb":
        return None
    name = cfg.run or "rdt"
    accelerator.init_trackers(os.environ.get("WANDB_PROJECT", "rdt-libero"), config=cfg.to_dict(),
                              init_kwargs={"wandb": {"name": name, "id": f"{name}-{fingerprint}"[:64],
                                                     "resume": "allow",
                                                     "dir": os.environ.get("WANDB_DIR") or accelerator.project_dir}})
    return accelerator.log


def _metrics_text(rows: list[dict[str, str]]) -> str:
    lines = [",".join(METRIC_COLUMNS)] + [",".join(r.get(c) or "" for c in METRIC_COLUMNS) for r in rows]
    return "\n".join(lines) + "\n"


def _csv_value(v: Any) -> str:
    if v is None:
        return ""
    return f"{v:.8g}" if isinstance(v, float) else str(v)


def read_metrics(out: Path) -> list[dict[str, float]]:
    """Rows of DIR/metrics.csv as floats (empty cells omitted)."""
    with open(Path(out) / METRICS, newline="") as f:
        return [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(f)]


# ================================================================================================ trainer
class Trainer:
    """One training run in one process of an accelerate launch. ``Trainer(cfg, out).run(until_step)``.

    The pieces are public so that tests can drive them: :meth:`accumulate` (forward/backward over one optimizer
    step's micro-batches), :meth:`apply` (clip, optimizer and LR-scheduler step, EMA update), :meth:`save_state`.
    """

    def __init__(self, cfg: train_config.TrainConfig, out: str | Path, resume: Path | None = None):
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        from rdt.data.dataset import LiberoDataset, split_episodes, transition_weights
        from rdt.encoders import load_vision_encoder
        from rdt.ema import EMA
        from rdt.lang import LanguageTable

        self.cfg, self.out = cfg, Path(out)
        cuda = torch.cuda.is_available()
        self.precision = cfg.resolved_mixed_precision(cuda)
        self.deepspeed = cfg.deepspeed == "zero2"
        if self.deepspeed:
            from accelerate.utils import InitProcessGroupKwargs

            if "LOCAL_RANK" not in os.environ:
                raise UserError("run config key 'deepspeed' = 'zero2' partitions the optimizer state over the "
                                "processes of a distributed launch (`accelerate launch --multi_gpu --num_processes N "
                                "-m rdt train ...`); this is a single process: set deepspeed: 'off'")
            # the accumulation goes into the DeepSpeed config, so it is derived from the launch's WORLD_SIZE
            plugin = deepspeed_plugin(cfg, cfg.accumulation(int(os.environ.get("WORLD_SIZE", "1"))), self.precision)
            # without CUDA, DeepSpeed's CPU accelerator with torch.distributed over gloo; mixed precision is the
            # plugin's autocast, so accelerate's is off
            handlers = [] if cuda else [InitProcessGroupKwargs(backend="gloo")]
            self.accelerator = acc = Accelerator(mixed_precision="no", deepspeed_plugin=plugin,
                                                 kwargs_handlers=handlers, **tracker_kwargs(cfg, self.out))
        else:
            # cpu=True without CUDA: several processes (WORLD_SIZE > 1) then use torch.distributed over gloo
            self.accelerator = acc = Accelerator(mixed_precision=self.precision, cpu=not cuda,
                                                 **tracker_kwargs(cfg, self.out))
        self.num_processes, self.rank = acc.num_processes, acc.process_index
        self.accumulation = cfg.accumulation(self.num_processes)
        self.fingerprint = cfg.fingerprint()
        self.device = acc.device
        set_seed(cfg.seed)

        # ---- frozen encoders and data
        vision_dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
        self.vision = load_vision_encoder(cfg.vision_encoder, device=self.device, dtype=vision_dtype)
        lang = LanguageTable.load(cfg.lang)
        lang.check_encoder(cfg.text_encoder)
        stats = stats_entry(cfg.stats)
        train_eps, held_eps = split_episodes(cfg.data, cfg.heldout_episodes)
        self.sample_on = "held-out" if held_eps else "training"
        cached = cfg.cache_image_features
        common = dict(image_transform=None if cached else self.vision.preprocessor, frame_ids=cached)
        self.train_set = LiberoDataset(cfg.data, lang, stats, episodes=train_eps, cond_mask_prob=cfg.cond_mask_prob,
                                       state_noise_snr=cfg.state_noise_snr, image_aug=cfg.image_aug, **common)
        self.sample_set = LiberoDataset(cfg.data, lang, stats, episodes=held_eps or train_eps, cond_mask_prob=0.0,
                                        state_noise_snr=None, image_aug=False, **common)
        self.train_features = self.sample_features = None
        if cached:
            from rdt.data.features import FrameFeatures

            t0 = time.perf_counter()
            self.train_features = FrameFeatures.build(self.train_set, self.vision)
            self.sample_features = FrameFeatures.build(self.sample_set, self.vision)
            self.log(f"image features of {self.train_features.table.shape[0] + self.sample_features.table.shape[0]} "
                     f"frame slots computed once in {time.perf_counter() - t0:.1f} s (cache_image_features)")
        weights = (None if cfg.oversample_transitions is None
                   else transition_weights(self.train_set, cfg.oversample_transitions))

        # ---- model, optimizer, schedule, EMA
        self.start_step = 0
        if resume is None:
            runner = initial_runner(cfg)
        else:
            from rdt.model.checkpoint import load_runner

            runner = load_runner(resume, weights="model")[0].train()
        self._check_dims(runner, lang)
        self.runner = runner
        c = runner.config
        self.positions = PositionedSamples(self.train_set, cfg.seed, c.num_train_timesteps,
                                           (c.pred_horizon, c.action_dim), weights)
        self.sample_positions = PositionedSamples(self.sample_set, cfg.seed, c.num_train_timesteps,
                                                  (c.pred_horizon, c.action_dim))
        self.optimizer = torch.optim.AdamW(runner.parameters(), lr=cfg.learning_rate,
                                           betas=(cfg.adam_beta1, cfg.adam_beta2), weight_decay=cfg.weight_decay,
                                           eps=cfg.adam_eps)
        # the scheduler's counter k = optimizer steps done; step k+1 uses learning_rate x lr_factor(k+1)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda k: cfg.lr_factor(k + 1))
        self.ema = EMA(runner, cfg.ema_decay)
        self.model, self.optimizer = acc.prepare(LossModel(runner), self.optimizer)
        self.ema.model.to(self.device)
        self.step = 0
        self.stop_signal: int | None = None
        self.nonfinite_steps = 0            # consecutive optimizer steps with a non-finite gradient norm
        if resume is not None:
            self._resume(resume)
        self._last_saved = self.step

    def _check_dims(self, runner, lang) -> None:
        c = runner.config
        if lang.hidden_size != c.lang_token_dim:
            raise UserError(f"{self.cfg.lang}: embeddings have {lang.hidden_size} dims, model {self.cfg.model!r} "
                            f"expects lang_token_dim={c.lang_token_dim}")
        if self.vision.hidden_size != c.img_token_dim or 6 * self.vision.num_patches != c.img_cond_len:
            raise UserError(f"vision encoder {self.cfg.vision_encoder!r} gives 6 x {self.vision.num_patches} tokens "
                            f"of {self.vision.hidden_size} dims; model {self.cfg.model!r} expects img_cond_len="
                            f"{c.img_cond_len} tokens of img_token_dim={c.img_token_dim}")

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast when mixed precision is bf16, for models outside the prepared one (the EMA's). Under
        DeepSpeed the engine autocasts its own forward and accelerate's autocast is off."""
        if self.deepspeed:
            return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")
        return self.accelerator.autocast()

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
        if self.deepspeed:
            if int(state["num_processes"]) != self.num_processes:
                raise UserError(f"{folder}: written by {state['num_processes']} processes with deepspeed: zero2 "
                                f"(optimizer state partitioned per process); resume it with {state['num_processes']} "
                                f"processes, not {self.num_processes}")
            self.accelerator.load_state(str(folder / DEEPSPEED_STATE))
        else:
            self.optimizer.load_state_dict(torch.load(folder / OPTIMIZER_FILE, map_location=self.device,
                                                      weights_only=True))
        self.scheduler.load_state_dict(torch.load(folder / SCHEDULER_FILE, weights_only=True))
        rng = torch.load(folder / RNG_FILE, weights_only=True)
        if len(rng) == self.num_processes:
            _set_rng_state(rng[self.rank])
        self.step = self.start_step = int(state["step"])
        if self.scheduler.last_epoch != self.step:
            raise UserError(f"{folder}: LR scheduler is at step {self.scheduler.last_epoch}, checkpoint at "
                            f"{self.step} (corrupt checkpoint)")

    def save_state(self) -> Path:
        """Write checkpoint-<step> (rank 0 only, atomically) and prune old ones; every process must call it."""
        from accelerate.utils import broadcast_object_list, gather_object

        rng = gather_object([_rng_state()]) if self.num_processes > 1 else [_rng_state()]
        folder = checkpoint_dir(self.out, self.step)
        with contextlib.ExitStack() as stack:
            tmp = stack.enter_context(atomic_dir(folder)) if self.is_main else None
            if self.is_main:
                from rdt.model.checkpoint import save_checkpoint

                # first: save_checkpoint replaces the whole folder
                save_checkpoint(tmp, self.runner, self.runner.config, ema_state_dict=self.ema.state_dict())
            if self.deepspeed:       # every process writes its partition of the optimizer state into rank 0's folder
                tmp = Path(broadcast_object_list([tmp])[0])
                self.accelerator.save_state(str(tmp / DEEPSPEED_STATE))
                self.accelerator.wait_for_everyone()
            if self.is_main:
                if not self.deepspeed:
                    torch.save(self.optimizer.state_dict(), tmp / OPTIMIZER_FILE)
                torch.save(self.scheduler.state_dict(), tmp / SCHEDULER_FILE)
                torch.save(rng, tmp / RNG_FILE)
                write_json(tmp / STATE_FILE, {
                    "step": self.step, "samples_seen": self.step * self.cfg.effective_batch_size,
                    "next_micro_batch": self.step * self.accumulation, "num_processes": self.num_processes,
                    "accumulation": self.accumulation, "ema_optimization_step": self.ema.optimization_step,
                    "fingerprint": self.fingerprint, "config": self.cfg.to_dict(), "time": time.time()})
        self._last_saved = self.step
        if self.is_main:
            for gone in prune_checkpoints(self.out, self.fingerprint, self.cfg.checkpoints_total_limit,
                                          written=self.step):
                self.log(f"pruned {gone.name} (checkpoints_total_limit={self.cfg.checkpoints_total_limit})")
        self.accelerator.wait_for_everyone()
        return folder

    # -------------------------------------------------------------------------------------- one step
    def model_inputs(self, batch: dict[str, Any], features=None) -> dict[str, torch.Tensor]:
        """A collated batch -> the keyword arguments of ``RDTRunner.compute_loss`` on this device. Image tokens
        come from the vision encoder, or from precomputed ``features`` when the batch carries frame ids."""
        dev = self.device
        if "frame_ids" in batch:
            img_tokens = features.views(batch["frame_ids"], batch["image_valid"])
        else:
            img_tokens = self.vision.encode_views(batch["images"].to(dev, non_blocking=True), batch["image_valid"])
        return {"lang_tokens": batch["lang"].to(dev), "lang_mask": batch["lang_mask"].to(dev),
                "img_tokens": img_tokens, "state_tokens": batch["state"].to(dev),
                "action_gt": batch["actions"].to(dev), "action_mask": batch["state_mask"].to(dev).unsqueeze(1),
                "ctrl_freqs": batch["ctrl_freq"].to(dev), "noise": batch["noise"].to(dev),
                "timesteps": batch["timestep"].to(dev)}

    def accumulate(self, micro_batches: Iterator[dict[str, Any]] | list[dict[str, Any]]) -> tuple[float, int]:
        """Forward/backward over ``accumulation`` micro-batches; gradients are all-reduced on the last one only.
        The loss of each micro-batch is divided by the accumulation, so the gradient is that of the mean loss
        over the effective batch. Returns (mean loss on this process, samples on this process).
        Under DeepSpeed, accelerate's ``accumulate`` marks the last micro-batch as the accumulation boundary, where
        the engine all-reduces, clips and steps; the engine divides the loss by the accumulation itself."""
        total, samples = 0.0, 0
        it = iter(micro_batches)
        for a in range(self.accumulation):
            batch = next(it)
            last = a == self.accumulation - 1
            if self.deepspeed:
                sync = self.accelerator.accumulate(self.model)
            else:
                sync = contextlib.nullcontext() if last else self.accelerator.no_sync(self.model)
            with sync:
                with self.accelerator.autocast():
                    loss = self.model(**self.model_inputs(batch, self.train_features))
                self.accelerator.backward(loss if self.deepspeed else loss / self.accumulation)
            total += float(loss.detach())
            samples += int(batch["state"].shape[0])
        return total / self.accumulation, samples

    def apply(self) -> tuple[float, float]:
        """Clip the gradient norm to ``max_grad_norm``, step AdamW, the LR schedule and the EMA.
        Returns (pre-clip gradient norm, LR used). A non-finite gradient skips the weight update.
        Under DeepSpeed the engine has already clipped and stepped in :meth:`accumulate` (also on a non-finite
        norm); the norm is its pre-clip norm and the optimizer calls here are no-ops."""
        lr = self.scheduler.get_last_lr()[0]
        grad_norm = float(self.accelerator.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm))
        if np.isfinite(grad_norm):
            self.optimizer.step()
            self.nonfinite_steps = 0
        else:
            self.nonfinite_steps += 1
            self.log(f"step {self.step + 1}: non-finite gradient norm {grad_norm}; "
                     f"{'DeepSpeed applied the update' if self.deepspeed else 'weights not updated'}")
            limit = self.cfg.max_nonfinite_steps
            if limit and self.nonfinite_steps >= limit:
                first = self.step + 2 - self.nonfinite_steps
                raise Diverged(f"{self.out}: training diverged: {self.nonfinite_steps} consecutive optimizer steps "
                               f"({first}-{self.step + 1}) had a non-finite gradient norm (max_nonfinite_steps="
                               f"{limit}); nothing after step {self._last_saved} was saved or exported. "
                               "Lower learning_rate or check the data and init_from weights")
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.ema.step(self.runner)
        return grad_norm, lr

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
            batch = collate_positioned([self.sample_positions[p] for p in range(i * b, (i + 1) * b)])
            inputs = self.model_inputs(batch, self.sample_features)
            with self.autocast():
                pred = self.ema.model.predict_action(
                    inputs["lang_tokens"], inputs["lang_mask"], inputs["img_tokens"], inputs["state_tokens"],
                    inputs["action_mask"], inputs["ctrl_freqs"], noise=inputs["noise"])
            se = (pred.float() - inputs["action_gt"].float())[..., slots.to(pred.device)] ** 2   # (B,64,7)
            errors.append(se.mean(dim=1).cpu())                                                 # (B,7)
        per_slot = torch.cat(errors).mean(dim=0)
        return {"sample_mse": float(per_slot.mean()),
                **{col: float(v) for col, v in zip(SAMPLE_MSE_SLOTS, per_slot)}}

    # -------------------------------------------------------------------------------------- loop
    def data_iterator(self) -> Iterator[dict[str, Any]]:
        sampler = MicroBatchPositions(self.step * self.accumulation, self.rank, self.num_processes,
                                      self.cfg.per_device_batch_size)
        workers = self.cfg.dataloader_num_workers
        loader = DataLoader(self.positions, batch_sampler=sampler, num_workers=workers,
                            collate_fn=collate_positioned, pin_memory=self.device.type == "cuda",
                            prefetch_factor=4 if workers else None, worker_init_fn=_ignore_stop_signals)
        return iter(loader)

    def _on_signal(self, signum, frame) -> None:
        self.stop_signal = signum

    def run(self, until_step: int) -> None:
        """Train from the current step to ``until_step`` and write checkpoint-<until_step>."""
        cfg = self.cfg
        self.log(cfg.batch_formula(self.num_processes))
        self.log(f"mixed precision {self.precision}; model {cfg.model} "
                 f"({self.runner.num_parameters() / 1e6:.1f}M parameters) from "
                 f"{'checkpoint-' + str(self.start_step) if self.start_step else (cfg.init_from or 'random init')}")
        self.log(f"AdamW lr {cfg.learning_rate:g} (warmup {cfg.lr_warmup_steps} steps, then constant), betas "
                 f"({cfg.adam_beta1}, {cfg.adam_beta2}), weight decay {cfg.weight_decay}, clip {cfg.max_grad_norm}; "
                 f"EMA power {cfg.ema_power} max {cfg.ema_max}")
        self.log(f"{len(self.train_set)} training samples ({len(self.train_set.episode_ids)} episodes); sample MSE on "
                 f"{len(self.sample_set.episode_ids)} {self.sample_on} episodes; steps {self.step} -> {until_step}")
        previous = {s: signal.signal(s, self._on_signal) for s in STOP_SIGNALS}
        tracker = start_tracker(self.accelerator, cfg, self.fingerprint)
        if self.is_main:
            ahead = max((s for s, _ in matching_checkpoints(self.out, self.fingerprint)[0]), default=0)
            metrics = MetricsLog(self.out, self.step, keep_until=ahead, tracker=tracker)
        else:
            metrics = None
        try:
            self._loop(until_step, metrics)
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
            if metrics is not None:
                metrics.close()
            if tracker is not None:
                self.accelerator.end_training()

    def _loop(self, until_step: int, metrics: MetricsLog | None) -> None:
        cfg = self.cfg
        data = self.data_iterator()
        progress = (Progress(until_step, "train", unit="step", initial=self.step) if self.is_main
                    else contextlib.nullcontext())
        with progress:
            while self.step < until_step:
                t0 = time.perf_counter()
                self.model.train()
                loss, samples = self.accumulate(data)
                grad_norm, lr = self.apply()
                stop = float(self.stop_signal is not None)
                summed = self.accelerator.reduce(torch.tensor([loss, samples, stop], device=self.device,
                                                              dtype=torch.float64), "sum")
                loss, samples, stop = float(summed[0]) / self.num_processes, int(summed[1]), bool(summed[2] > 0)
                dt = time.perf_counter() - t0
                row = {"step": self.step, "loss": loss, "lr": lr, "grad_norm": grad_norm, "samples": samples,
                       "samples_per_s": samples / dt, "step_time_s": dt, "sample_mse": None}
                if self.is_main and cfg.sample_period and self.step % cfg.sample_period == 0:
                    row.update(self.sample_mse())
                if self.is_main:
                    metrics.write(row)
                    progress.update(1, loss=loss, lr=lr)
                    if self.step % cfg.log_period == 0 or self.step == until_step:
                        extra = f" sample_mse {row['sample_mse']:.5f}" if row["sample_mse"] is not None else ""
                        self.log(f"step {self.step} loss {loss:.5f} lr {lr:.3g} grad_norm {grad_norm:.3g} "
                                 f"{samples / dt:.1f} samples/s{extra}")
                if self.step % cfg.checkpointing_period == 0 or self.step == until_step or stop:
                    folder = self.save_state()
                    self.log(f"saved {folder}")
                if stop:
                    signum = self.stop_signal or signal.SIGTERM
                    raise Preempted(signum, self.step, checkpoint_dir(self.out, self.step))


# ================================================================================================ command
def check_previous_export(folder: str | Path, identity: str, until_step: int) -> int:
    """The step of the export that this segment continues (the segment's declared input), after checking that it
    was made by this training (same identity: settings, data and code) at an earlier step."""
    from rdt.utils.files import read_json

    pipeline = read_json(Path(folder) / "pipeline.json", "not found (expected an export of `rdt train`)")
    if pipeline.get("identity") != identity:
        raise UserError(f"{folder}: made by a training of identity {pipeline.get('identity')}, this segment's is "
                        f"{identity} (other settings, data or training code); a segment only continues an export "
                        "of its own training: rerun the earlier segments (snakemake does this when their params "
                        "changed)")
    step = int(pipeline.get("step", -1))
    if not 0 < step < until_step:
        raise UserError(f"{folder}: export of step {step}; expected a step before --until-step {until_step}")
    return step


def train_segment(cfg: train_config.TrainConfig, until_step: int, out: str | Path,
                  previous_export: str | Path | None = None) -> Path:
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
    identity = cfg.fingerprint()
    run = cfg.run or out.name
    rank = int(os.environ.get("RANK", "0"))
    previous = None if previous_export is None else check_previous_export(previous_export, identity, until_step)
    match, stale = matching_checkpoints(out, identity)
    for folder in stale:
        if rank == 0:
            print(f"train: ignoring {folder} (another training: identity "
                  f"{read_trainer_state(folder).get('fingerprint')} != {identity})", flush=True)
    if any(step == until_step for step, _ in match):
        if rank == 0:
            print(f"train: checkpoint-{until_step} exists with these settings and code (identity {identity}); "
                  "exporting it", flush=True)
            export_checkpoint(cfg, out, until_step, run, identity)
        return export_dir(out, until_step)
    resume = find_resume(out, identity, until_step)
    if rank == 0 and previous is not None and (resume is None or resume[0] < previous):
        print(f"train: checkpoint-{previous} (the resumable state of {previous_export}) is gone (retention); "
              f"recomputing the same trajectory from {'checkpoint-%d' % resume[0] if resume else 'the start'}",
              flush=True)
    trainer = Trainer(cfg, out, resume=None if resume is None else resume[1])
    trainer.run(until_step)
    if trainer.is_main:
        folder = export_checkpoint(cfg, out, until_step, run, identity)
        trainer.log(f"exported {folder} (identity {identity})")
    trainer.accelerator.wait_for_everyone()
    return export_dir(out, until_step)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="RUN.yaml with the training settings (see rdt/train_config.py)")
    p.add_argument("--until-step", type=int, required=True,
                   help="train up to this optimizer step; writes checkpoint-S and export/step-S")
    p.add_argument("--out", required=True, help="run folder (checkpoints/, export/, metrics.csv)")
    p.add_argument("--previous-export", metavar="DIR",
                   help="the export this segment continues (the workflow's declared input); it must come from the "
                        "same training (identity in its pipeline.json)")


LOCK_FILE = ".train.lock"


@contextlib.contextmanager
def run_lock(out: str | Path) -> Iterator[None]:
    """Hold DIR/.train.lock (an exclusive flock, released by the kernel however the process ends) while training
    into run folder ``out``; a second trainer on the same folder gets a UserError naming the holder. Only the main
    process of a launch (RANK 0) takes it."""
    if int(os.environ.get("RANK", "0")) != 0:
        yield
        return
    import fcntl
    import socket

    path = Path(out) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown process"
            raise UserError(f"{out}: another trainer is training into this run folder ({holder}; lock {path}); "
                            "wait for it to finish, stop it, or use another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def stop_with_launcher() -> None:
    """Started by ``accelerate launch`` (or torchrun), the trainer asks the kernel for SIGTERM when the launcher
    dies (PR_SET_PDEATHSIG): killing the launcher then stops the training like a preemption (checkpoint, exit
    143) instead of leaving it running unsupervised. A trainer started from a shell is left alone."""
    import re

    ppid = os.getppid()
    try:
        parent = Path(f"/proc/{ppid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return
    if not re.search(r"accelerate|torchrun|torch\.distributed\.(run|launch)", parent):
        return
    import ctypes

    PR_SET_PDEATHSIG = 1
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM)) != 0:
        return
    if os.getppid() != ppid:              # the launcher died before the request was made
        os.kill(os.getpid(), signal.SIGTERM)


def main(args: argparse.Namespace) -> int:
    cfg = train_config.load(args.config)
    stop_with_launcher()
    try:
        with run_lock(args.out):
            train_segment(cfg, args.until_step, args.out, previous_export=args.previous_export)
    except Preempted as e:
        print(f"train: {e}", flush=True)
        return 128 + int(e.signum)
    return 0
