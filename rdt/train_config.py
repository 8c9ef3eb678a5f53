"""The training run configuration (``RUN.yaml``): every setting, its default (the RDT-1B fine-tuning recipe),
validation, and the values derived from it at launch (gradient accumulation, the batch formula, the fingerprint).

``RUN.yaml`` is a flat mapping of the keys of :class:`TrainConfig`. An unknown key or a value of the wrong type is a
UserError naming the key. The workflow and the report import this module, so the defaults live here only.

Batch arithmetic (the seed failure was 4 per GPU x 1 accumulation x 8 GPUs = 32 instead of 256):
``effective_batch_size = per_device_batch_size x gradient_accumulation x num_processes``; the accumulation is
derived at launch from the configured effective batch, so changing the GPU count keeps the effective batch.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, fields
from typing import Any

import yaml

from rdt.errors import UserError
from rdt.model.config import PRESETS as MODEL_PRESETS
from rdt.utils.files import read_yaml
from rdt.utils.hashing import file_identity, settings_key

MIXED_PRECISION = ("auto", "bf16", "no")
DEEPSPEED = ("off", "zero2")


@dataclass
class TrainConfig:
    """One training run. Defaults reproduce RDT-1B's fine-tuning recipe (docs/recipe.md); the only paths
    without a default are the data files."""

    # ---- model and encoders
    model: str = "rdt-1b"
    """Architecture preset: ``tiny`` (tests, embedded default), ``rdt-170m`` or ``rdt-1b``."""
    init_from: str | None = "robotics-diffusion-transformer/rdt-1b"
    """Initial weights: a checkpoint folder (released ``config.json`` + ``pytorch_model.bin``, or ours), or a
    Hugging Face id in the local cache; loaded with strict keys. ``null`` = random initialisation from ``seed``."""
    text_encoder: str = "google/t5-v1_1-xxl"
    """Text encoder name; must equal the encoder recorded in ``lang`` (``tiny`` in tests)."""
    vision_encoder: str = "google/siglip-so400m-patch14-384"
    """Frozen vision encoder that computes image tokens on the fly (``tiny`` in tests)."""

    # ---- data
    data: str | None = None
    """Training HDF5 written by ``python -m rdt convert`` (docs/formats.md §2). Required."""
    lang: str | None = None
    """``lang.safetensors`` written by ``python -m rdt encode`` (docs/formats.md §4). Required."""
    stats: str | None = None
    """``dataset_stat.json`` written by ``python -m rdt stats`` (docs/formats.md §3). Required."""
    heldout_episodes: int = 1
    """Episodes per task kept out of training; the sample MSE is measured on them."""
    oversample_transitions: float | None = None
    """Weight factor for steps near gripper open/close transitions (``null`` = uniform over all steps)."""
    cond_mask_prob: float = 0.1
    """Probability of masking each condition (instruction, each image, state, control frequency) (§6.4)."""
    state_noise_snr: float | None = 40.0
    """Gaussian state noise at this SNR in dB (sigma = per-episode std / sqrt(10^(snr/10))); ``null`` = none."""
    state_norm: str = "none"
    """``none`` (RDT-1B: the unified state in physical units) or ``zscore``: each state slot standardised with the
    training data's ``state_mean``/``state_std`` (std floored at 0.01). Recorded in the export's pipeline.json, so
    the policy applies the same at evaluation; the audit flags it as a deviation from the RDT-1B recipe."""
    image_aug: bool = True
    """Colour jitter / corruption with probability 0.5 on valid images (§6.3)."""
    dataloader_num_workers: int = 8
    """Data-loading worker processes per training process (0 = load in the training process)."""
    cache_image_features: bool = False
    """Compute the frozen vision encoder's image tokens once per frame before training and reuse them at every step
    (needs ``image_aug: false``: an augmented frame differs at every draw; refused otherwise). Same tokens, several
    times faster on small datasets; the cache must fit in memory (frames x patches x hidden)."""

    # ---- batch and optimisation
    effective_batch_size: int = 256
    """Samples per optimizer step over all processes (RDT-1B: 256)."""
    per_device_batch_size: int = 4
    """Samples per forward/backward pass on one process."""
    learning_rate: float = 1e-4
    """AdamW learning rate after warmup (constant)."""
    lr_warmup_steps: int = 5000
    """Optimizer steps of linear warmup: step n (1-based) uses learning_rate x min(1, n / lr_warmup_steps)."""
    adam_beta1: float = 0.9
    """AdamW first-moment decay."""
    adam_beta2: float = 0.999
    """AdamW second-moment decay."""
    weight_decay: float = 0.01
    """AdamW decoupled weight decay, applied to every parameter (as RDT does)."""
    adam_eps: float = 1e-8
    """AdamW epsilon."""
    max_grad_norm: float = 1.0
    """Global gradient-norm clipping threshold, applied every optimizer step."""
    max_nonfinite_steps: int = 20
    """A step whose gradient norm is not finite (inf/NaN) is skipped (weights not updated); this many consecutive
    skipped steps stop the run with an error (training diverged), and nothing after its last checkpoint is saved
    or exported. 0 = never stop."""
    mixed_precision: str = "auto"
    """``auto`` = bf16 autocast on GPU and fp32 on CPU; ``bf16``; ``no`` (fp32). Master weights are fp32."""
    deepspeed: str = "off"
    """``off`` = data parallel (DDP); ``zero2`` = DeepSpeed ZeRO stage 2 through accelerate (optimizer state and
    gradients partitioned over the processes; mixed precision as without it: bf16 autocast, fp32 weights). Needs the
    ``deepspeed`` package and a launch of several processes; its checkpoints resume with the same process count
    only. In YAML write ``'off'`` quoted (unquoted it reads as false)."""
    seed: int = 0
    """Seed of the initialisation, the sample order and every per-sample random draw."""

    # ---- EMA (RDT's schedule, models/ema_model.py)
    ema_power: float = 0.75
    """Exponent of the warm-up of the EMA decay: 1 - (1 + n / ema_inv_gamma)^-ema_power."""
    ema_max: float = 0.9999
    """Upper bound of the EMA decay (reached after ~215k optimizer steps with the defaults)."""
    ema_min: float = 0.0
    """Lower bound of the EMA decay."""
    ema_inv_gamma: float = 1.0
    """Step scale of the EMA decay warm-up."""
    ema_update_after_step: int = 0
    """Optimizer steps before the EMA starts averaging (until then it copies the weights)."""

    # ---- checkpoints and monitoring
    checkpointing_period: int = 2000
    """Optimizer steps between resumable checkpoints (DIR/checkpoints/checkpoint-<step>)."""
    checkpoints_total_limit: int = 30
    """Resumable checkpoints kept (the newest is never deleted; exports are never pruned)."""
    sample_period: int = 500
    """Optimizer steps between sample-MSE measurements on held-out episodes (0 = never)."""
    sample_batches: int = 2
    """Batches of per_device_batch_size held-out samples per sample-MSE measurement."""
    log_period: int = 50
    """Optimizer steps between plain log lines (metrics.csv gets every step)."""
    report_to: str = "none"
    """Experiment tracker, never required and not part of the identity. metrics.csv and TensorBoard event files
    (DIR/tensorboard/, ``tensorboard --logdir results``) are written whatever this says. ``none`` (default):
    nothing else; ``tensorboard``: the same, but a missing tensorboard package is an error instead of no event
    files; ``wandb``: also log every row to Weights & Biases through accelerate's tracker (needs ``pip install
    wandb`` and a login, or ``WANDB_MODE=offline``; project ``$WANDB_PROJECT`` or ``rdt-libero``, one W&B run per
    training, continued by each segment). Asking for a tracker that is not installed is an error when the
    configuration is read."""

    # ---- identity
    code_fingerprint: str | None = None
    """``null`` (default): the training's identity includes the fingerprint of the code that determines the weights
    (``python -m rdt fingerprint rdt.training.command``: rdt/training/command.py and every rdt module it imports,
    comments and docstrings excluded), so a code edit retrains instead of resuming or re-exporting checkpoints of
    the old code. Set it to the previous value (``train_code`` in the export's pipeline.json) to declare an edit
    that does not change the weights (the escape hatch: existing checkpoints stay valid)."""

    run: str | None = None
    """Run name written into the exported pipeline.json (default: the output folder's name)."""

    # ------------------------------------------------------------------------------------------ derived
    def accumulation(self, num_processes: int) -> int:
        """Gradient accumulation steps so that per-device x accumulation x processes = effective batch."""
        per_step = self.per_device_batch_size * num_processes
        if num_processes < 1 or self.effective_batch_size % per_step:
            raise UserError(
                f"effective_batch_size={self.effective_batch_size} is not divisible by per_device_batch_size="
                f"{self.per_device_batch_size} x num_processes={num_processes} (= {per_step}); choose an effective "
                "batch that is a multiple of their product"
            )
        return self.effective_batch_size // per_step

    def batch_formula(self, num_processes: int) -> str:
        acc = self.accumulation(num_processes)
        return (
            f"effective batch {self.effective_batch_size} = {self.per_device_batch_size} per device x "
            f"{acc} accumulation x {num_processes} processes"
        )

    def lr_factor(self, step: int) -> float:
        """LR multiplier used by optimizer step ``step`` (1-based): linear warmup from 0, then 1."""
        if self.lr_warmup_steps <= 0:
            return 1.0
        return min(1.0, step / self.lr_warmup_steps)

    def ema_decay(self, step: int) -> float:
        """RDT's EMA decay after ``step`` optimizer steps (models/ema_model.py::get_decay)."""
        s = max(0, step - self.ema_update_after_step - 1)
        if s <= 0:
            return 0.0
        value = 1.0 - (1.0 + s / self.ema_inv_gamma) ** (-self.ema_power)
        return max(self.ema_min, min(value, self.ema_max))

    def resolved_mixed_precision(self, cuda: bool) -> str:
        if self.mixed_precision == "auto":
            return "bf16" if cuda else "no"
        return self.mixed_precision

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def training_code(self) -> str:
        """The code part of the identity: ``code_fingerprint`` when pinned, else the fingerprint of the code."""
        return self.code_fingerprint or code_fingerprint()

    def fingerprint(self) -> str:
        """The training's identity: a hash of everything that determines the training trajectory: the settings
        (minus bookkeeping ones that do not change the weights), the identity of the data, language and statistics
        files, and the training code (:meth:`training_code`). A checkpoint whose identity differs is never resumed
        or exported; exports record it in pipeline.json (``identity``), evaluation records key on it."""
        d = {k: v for k, v in self.to_dict().items() if k not in _NOT_IN_FINGERPRINT}
        d.pop("code_fingerprint", None)
        for key in ("data", "lang", "stats"):
            d[key] = file_identity(getattr(self, key))
        d["code"] = self.training_code()
        return settings_key(d)


#: the entry module of the code that determines a training's weights (with every rdt module it imports)
TRAINING_CODE = "rdt.training.command"


def code_fingerprint() -> str:
    """Fingerprint of the training code (rdt.fingerprint: the AST without comments and docstrings)."""
    from rdt.fingerprint import fingerprint

    return fingerprint(TRAINING_CODE)


# settings that do not change the trained weights (the process count does not either: the accumulation keeps the
# effective batch and the per-sample seeds keep the draws)
_NOT_IN_FINGERPRINT = (
    "checkpointing_period",
    "checkpoints_total_limit",
    "sample_period",
    "sample_batches",
    "log_period",
    "dataloader_num_workers",
    "run",
    "max_nonfinite_steps",
    "report_to",
)
NOT_IN_FINGERPRINT = _NOT_IN_FINGERPRINT


REPORT_TO = ("none", "tensorboard", "wandb")
#: the allowed values and bounds of the settings. The workflow schema (workflow/schemas/config.schema.yaml, train
#: section) repeats them so that Snakemake-side validation names the key; tests/test_train_config.py checks that both
#: accept and refuse the same values.
STATE_NORMS = ("none", "zscore")  # rdt.data.stats.STATE_NORMS (a test checks they agree; importing it here is heavy)
CHOICES = {
    "model": MODEL_PRESETS,
    "mixed_precision": MIXED_PRECISION,
    "deepspeed": DEEPSPEED,
    "report_to": REPORT_TO,
    "state_norm": STATE_NORMS,
}
_POSITIVE = (
    "effective_batch_size",
    "per_device_batch_size",
    "checkpointing_period",
    "checkpoints_total_limit",
    "log_period",
    "learning_rate",
    "adam_eps",
    "max_grad_norm",
    "ema_inv_gamma",
)
_NON_NEGATIVE = (
    "lr_warmup_steps",
    "weight_decay",
    "ema_update_after_step",
    "sample_period",
    "sample_batches",
    "dataloader_num_workers",
    "heldout_episodes",
    "ema_min",
    "ema_power",
    "max_nonfinite_steps",
)
_UNIT_INTERVAL = ("cond_mask_prob", "adam_beta1", "adam_beta2", "ema_max", "ema_min")
_REQUIRED = ("data", "lang", "stats")


def _check_type(key: str, value: Any, annotation: str, source: str) -> Any:
    """Return ``value`` converted to the annotated type (int -> float allowed) or raise naming the key."""
    hint = _HINTS[key]
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in allowed:
            return None
        raise UserError(f"{source}: key {key!r} must not be null (expected {annotation})")
    for kind in allowed:
        if kind is bool and isinstance(value, bool):
            return value
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if kind is str and isinstance(value, str):
            return value
    raise UserError(f"{source}: key {key!r} = {value!r} has type {type(value).__name__}; expected {annotation}")


_HINTS = typing.get_type_hints(TrainConfig)


def check_tracker_installed(report_to: str, what: str, anyway: str) -> None:
    """A tracker asked for (``report_to``, training's or evaluation's) must be importable: an error saying ``what``
    asked for it and that ``anyway`` is written without it."""
    import importlib.util

    if report_to != "none" and importlib.util.find_spec(report_to) is None:
        raise UserError(
            f"{what}: the {report_to} package is not installed in this environment (pip install {report_to}); "
            f"or set report_to: none ({anyway} are written anyway)"
        )


def from_dict(values: dict[str, Any], source: str = "run config") -> TrainConfig:
    """Validate a mapping of settings into a TrainConfig; unknown keys, wrong types or values are UserErrors."""
    if not isinstance(values, dict):
        raise UserError(f"{source}: expected a mapping of training settings, got {type(values).__name__}")
    known = {f.name: f for f in fields(TrainConfig)}
    if values.get("deepspeed") is False:
        raise UserError(
            f"{source}: key 'deepspeed' = false (YAML reads an unquoted off as false); expected one of "
            "'off' (quoted) or zero2"
        )
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise UserError(
            f"{source}: unknown key(s) {', '.join(map(repr, unknown))}; known keys: {', '.join(sorted(known))}"
        )
    kwargs = {k: _check_type(k, v, str(known[k].type), source) for k, v in values.items()}
    cfg = TrainConfig(**kwargs)
    for key, choices in CHOICES.items():
        if getattr(cfg, key) not in choices:
            raise UserError(f"{source}: key {key!r} = {getattr(cfg, key)!r}; expected one of {', '.join(choices)}")
    for key in _POSITIVE:
        if not getattr(cfg, key) > 0:
            raise UserError(f"{source}: key {key!r} = {getattr(cfg, key)!r}; expected a positive number")
    for key in _NON_NEGATIVE:
        if getattr(cfg, key) < 0:
            raise UserError(f"{source}: key {key!r} = {getattr(cfg, key)!r}; expected a number >= 0")
    for key in _UNIT_INTERVAL:
        if not 0.0 <= getattr(cfg, key) <= 1.0:
            raise UserError(f"{source}: key {key!r} = {getattr(cfg, key)!r}; expected a number in [0, 1]")
    if cfg.oversample_transitions is not None and cfg.oversample_transitions < 1.0:
        raise UserError(
            f"{source}: key 'oversample_transitions' = {cfg.oversample_transitions!r}; expected a "
            "factor >= 1 or null (off)"
        )
    if cfg.cache_image_features and cfg.image_aug:
        raise UserError(
            f"{source}: key 'cache_image_features' = true needs image_aug: false (augmented frames differ "
            "at every draw, so their features cannot be computed once)"
        )
    if cfg.ema_min > cfg.ema_max:
        raise UserError(f"{source}: ema_min={cfg.ema_min} > ema_max={cfg.ema_max}")
    check_tracker_installed(
        cfg.report_to, f"{source}: key 'report_to' = {cfg.report_to!r}", "metrics.csv and the TensorBoard files"
    )
    for key in _REQUIRED:
        if getattr(cfg, key) is None:
            raise UserError(f"{source}: key {key!r} is required (path to the {_REQUIRED_WHAT[key]})")
    return cfg


_REQUIRED_WHAT = {
    "data": "training HDF5 from `rdt convert`",
    "lang": "lang.safetensors from `rdt encode`",
    "stats": "dataset_stat.json from `rdt stats`",
}


def load(path: str | os.PathLike) -> TrainConfig:
    """Read and validate ``RUN.yaml``; relative data paths are taken relative to the working directory."""
    values = read_yaml(path, "run config not found")
    return from_dict(values if values is not None else {}, source=str(path))


def dump(cfg: TrainConfig | dict[str, Any]) -> str:
    """RUN.yaml text of a TrainConfig or of a mapping of its settings (the workflow's run_config rule writes
    ``rdt.plan.Plan.train_settings`` with it); strings YAML would read otherwise (``'off'``) are quoted, so
    :func:`load` reads back the same settings."""
    return yaml.safe_dump(cfg.to_dict() if isinstance(cfg, TrainConfig) else dict(cfg), sort_keys=False)
