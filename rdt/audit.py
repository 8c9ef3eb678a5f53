"""Configuration audit: every setting that decides a run's result, against the RDT-1B fine-tuning recipe.

A run is described by its training settings (the keys of ``RUN.yaml``, rdt/train_config.py), the number of
training processes (GPUs; 0 = one CPU process), its evaluation execution horizons and, when known, its last training
step and data settings. Every row states the recipe value, where that value comes from, the original code's value
(the official ``finetune.sh`` of thu-ml/RoboticsDiffusionTransformer; docs/recipe.md) when it says
something else, the run's value (with the formula of derived values, e.g. ``4 x 8 x 8 = 256``) and a flag:

- ``ok``: within the recipe;
- ``DEVIATES``: outside it (e.g. a random-initialised or tiny model, effective batch 32, warmup 100);
- ``comparison``: an execution horizon outside 8-16 (e.g. H=64) evaluated **next to** one inside it, on purpose,
  to show the difference; it is a deviation only when no recipe horizon is evaluated.

Sources (``source`` column): ``seed analysis`` = the seed's comparison of the paper recipe with its current and
improved training; ``finetune.sh`` = the official fine-tune script; ``RDT code`` = the original model/config;
all three described in docs/recipe.md. Where the two disagree (warmup: the
original's constant scheduler ignores warmup; checkpoint period 1000; batch 32 per GPU), the recipe column follows the
seed analysis and the ``original`` column shows the script's value, so the user sees both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rdt.model.config import PRED_HORIZON, RDTConfig
from rdt.train_config import TrainConfig, from_dict

OK, DEVIATES, COMPARISON = "ok", "DEVIATES", "comparison"
SEED, FINETUNE, CODE, README = "seed analysis", "finetune.sh", "RDT code", "RDT README"
RELEASED = {"rdt-1b": "robotics-diffusion-transformer/rdt-1b", "rdt-170m": "robotics-diffusion-transformer/rdt-170m"}
T5_XXL, SIGLIP = "google/t5-v1_1-xxl", "google/siglip-so400m-patch14-384"
SIGLIP_INPUT = 384
RECIPE_HORIZONS = (8, 16)


@dataclass(frozen=True)
class Row:
    setting: str
    recipe: str
    value: str
    formula: str
    ok: bool
    source: str = SEED
    original: str = ""
    comparison: bool = False

    @property
    def flag(self) -> str:
        if self.ok:
            return OK
        return COMPARISON if self.comparison else DEVIATES

    def as_dict(self) -> dict[str, Any]:
        return {
            "setting": self.setting,
            "recipe": self.recipe,
            "source": self.source,
            "original": self.original,
            "value": self.value,
            "formula": self.formula,
            "flag": self.flag,
        }


COLUMNS = ("setting", "recipe", "source", "original", "value", "formula", "flag")


def _in_range(value: float, lo: float, hi: float) -> bool:
    return lo <= value <= hi


def _named(name: str | None, want: str) -> bool:
    """An encoder/checkpoint given by hub id or by a local folder of that name."""
    return bool(name) and str(name).rstrip("/").split("/")[-1] == want.split("/")[-1]


def horizon_rows(exec_horizons: list[int], chunk: int = PRED_HORIZON) -> list[Row]:
    """One row per evaluated execution horizon; outside 8-16 it is a comparison when 8-16 is also evaluated."""
    any_recipe = any(_in_range(h, *RECIPE_HORIZONS) for h in exec_horizons)
    return [
        Row(
            f"exec horizon h{h}",
            "8-16",
            str(h),
            f"steps executed per predicted chunk of {chunk}"
            + (
                ""
                if _in_range(h, *RECIPE_HORIZONS) or not any_recipe
                else "; evaluated next to a recipe horizon, as a comparison"
            ),
            _in_range(h, *RECIPE_HORIZONS),
            SEED,
            "64 (agilex_inference.py executes the whole chunk)",
            comparison=any_recipe,
        )
        for h in exec_horizons
    ]


def encoder_rows(text_encoder: str | None, vision_encoder: str | None, image_size: int | None = None) -> list[Row]:
    rows = [
        Row("text encoder", T5_XXL, str(text_encoder), "", _named(text_encoder, T5_XXL), CODE),
        Row("vision encoder", SIGLIP, str(vision_encoder), "", _named(vision_encoder, SIGLIP), CODE),
    ]
    if image_size is not None:
        rows.append(
            Row(
                "vision input size",
                f"{SIGLIP_INPUT} px",
                f"{image_size} px",
                "images resized to the vision encoder's input",
                image_size == SIGLIP_INPUT,
                CODE,
            )
        )
    return rows


def _accumulation(train: TrainConfig, processes: int) -> tuple[int | None, str]:
    """Gradient accumulation (None when the effective batch is not a multiple of one step's) and its formula."""
    per_device, effective = train.per_device_batch_size, train.effective_batch_size
    per_step = per_device * processes
    if effective % per_step == 0:
        accumulation = effective // per_step
        return accumulation, f"{per_device} x {accumulation} x {processes} = {effective}"
    return None, f"{effective} is not divisible by {per_device} x {processes} = {per_step}"


def _model_rows(train: TrainConfig, model: RDTConfig) -> list[Row]:
    """The model: preset, initial weights, text and vision encoders (and the vision input size when known)."""
    init = train.init_from
    vision_size = (
        SIGLIP_INPUT if _named(train.vision_encoder, SIGLIP) else (64 if train.vision_encoder == "tiny" else None)
    )
    return [
        Row(
            "model preset",
            "rdt-1b",
            train.model,
            f"hidden {model.hidden_size}, depth {model.depth}, {model.num_heads} heads",
            train.model == "rdt-1b",
            SEED,
            "rdt-1b",
        ),
        Row(
            "initial weights",
            f"released {RELEASED['rdt-1b']}",
            "random (init_from: null)" if not init else str(init),
            "fine-tuning starts from the released pre-trained weights"
            if init
            else f"random initialisation from seed {train.seed}: nothing pre-trained",
            bool(init),
            FINETUNE,
            RELEASED["rdt-1b"],
        ),
        *encoder_rows(train.text_encoder, train.vision_encoder, vision_size),
    ]


def _batch_rows(train: TrainConfig, processes: int) -> list[Row]:
    """The batch: effective batch, per-device batch and the gradient accumulation that joins them."""
    per_device, effective = train.per_device_batch_size, train.effective_batch_size
    accumulation, batch_formula = _accumulation(train, processes)
    return [
        Row(
            "effective batch",
            "256",
            str(effective),
            f"per device x accumulation x processes: {batch_formula}",
            effective == 256 and accumulation is not None,
            SEED,
            "32 per GPU x GPUs of the hostfile",
        ),
        Row("per-device batch", "4-8", str(per_device), "", _in_range(per_device, 4, 8), SEED, "32"),
        Row(
            "gradient accumulation",
            "256 / (per device x processes)",
            str(accumulation) if accumulation is not None else "not an integer",
            f"{effective} / ({per_device} x {processes})" if accumulation else batch_formula,
            accumulation is not None and effective == 256,
            SEED,
            "1",
        ),
    ]


def _optimiser_rows(train: TrainConfig, gpus: int) -> list[Row]:
    """The optimisation: learning rate, warmup and mixed precision (resolved for a GPU or a CPU run)."""
    precision = train.resolved_mixed_precision(cuda=gpus > 0)
    return [
        Row(
            "learning rate",
            "1e-4 constant",
            f"{train.learning_rate:g} constant",
            "",
            train.learning_rate == 1e-4,
            FINETUNE,
            "1e-4 constant",
        ),
        Row(
            "warmup steps",
            "5000-10000",
            str(train.lr_warmup_steps),
            "",
            _in_range(train.lr_warmup_steps, 5000, 10000),
            SEED,
            "none (the constant scheduler ignores --lr_warmup_steps)",
        ),
        Row(
            "mixed precision",
            "bf16",
            precision,
            f"mixed_precision={train.mixed_precision}, {'GPU' if gpus > 0 else 'CPU'}",
            precision == "bf16",
            FINETUNE,
            "bf16",
        ),
    ]


def _regularisation_rows(train: TrainConfig) -> list[Row]:
    """The regularisation: image augmentation, state noise and condition masking."""
    return [
        Row(
            "image augmentation",
            "on",
            "on" if train.image_aug else "off",
            "",
            bool(train.image_aug),
            FINETUNE,
            "--image_aug",
        ),
        Row(
            "state noise",
            "40 dB SNR",
            "off" if train.state_noise_snr is None else f"{train.state_noise_snr:g} dB",
            "",
            train.state_noise_snr == 40,
            FINETUNE,
            "--state_noise_snr=40",
        ),
        Row(
            "state normalisation",
            "none",
            train.state_norm,
            "z-score: (state - state_mean) / state_std of the training data, applied again by the policy",
            train.state_norm == "none",
            CODE,
            "none (physical units)",
        ),
        Row(
            "condition masking",
            "0.1",
            f"{train.cond_mask_prob:g}",
            "probability of dropping each condition",
            train.cond_mask_prob == 0.1,
            CODE,
            "0.1 (default)",
        ),
    ]


def _checkpoint_rows(train: TrainConfig) -> list[Row]:
    """The checkpoints: how often one is written and how many are kept."""
    return [
        Row(
            "checkpoint period",
            "2000-5000",
            str(train.checkpointing_period),
            "",
            _in_range(train.checkpointing_period, 2000, 5000),
            SEED,
            "1000",
        ),
        Row(
            "checkpoints kept",
            "30-50",
            str(train.checkpoints_total_limit),
            "",
            _in_range(train.checkpoints_total_limit, 30, 50),
            SEED,
            "40 (has no effect in the original code)",
        ),
    ]


def _sampler_rows(model: RDTConfig) -> list[Row]:
    """The diffusion sampler of the model preset: inference steps and beta schedule."""
    sched = model.noise_scheduler
    return [
        Row(
            "inference steps",
            "5",
            str(sched["num_inference_timesteps"]),
            "DPM-Solver++ steps",
            int(sched["num_inference_timesteps"]) == 5,
            CODE,
            "5",
        ),
        Row(
            "beta schedule",
            "squaredcos_cap_v2",
            str(sched["beta_schedule"]),
            "",
            sched["beta_schedule"] == "squaredcos_cap_v2",
            CODE,
            "squaredcos_cap_v2",
        ),
    ]


def _length_rows(train: TrainConfig, model: RDTConfig, max_steps: int | None) -> list[Row]:
    """The lengths: the predicted action chunk and, when known, the number of training steps."""
    rows = [
        Row(
            "action chunk",
            str(PRED_HORIZON),
            str(model.pred_horizon),
            f"model preset {train.model}",
            model.pred_horizon == PRED_HORIZON,
            SEED,
            str(PRED_HORIZON),
        )
    ]
    if max_steps is not None:
        rows.append(
            Row(
                "training steps",
                ">= 150000",
                str(max_steps),
                "fine-tuning length (RDT README FAQ: at least 150K steps, whatever the batch size)",
                max_steps >= 150000,
                README,
                "200000 (finetune.sh)",
            )
        )
    return rows


def _image_rows(model: RDTConfig, data: dict[str, Any] | None) -> list[Row]:
    """The camera images: their stored size (when the data section is known) and the frames of history."""
    rows = []
    if data is not None:
        size = data.get("image_size")
        rows.append(
            Row(
                "camera image size",
                "the demos' size",
                "the demos' size" if not size else f"{size} px",
                "frames stored for training and rendered in evaluation; resized to the vision input",
                True,
                SEED,
                "-",
            )
        )
    history = model.img_pos_embed_config[0][1][0]
    rows.append(Row("image history", "2", str(history), "frames per camera (t-1, t)", history == 2, SEED, "2"))
    return rows


def _demo_rows(demos: dict[str, Any] | None) -> list[Row]:
    """Scripted demos with noise injection: shown beside the recipe (whose demos are human teleoperation)."""
    if not demos or demos.get("source") != "expert":
        return []
    noise = float(demos.get("action_noise") or 0.0)
    return [
        Row(
            "demo noise injection",
            "none",
            f"{noise:g} std" if noise else "none",
            "DART: executed arm commands perturbed, the expert's clean command recorded as the label",
            noise == 0.0,
            "rdt.libero.expert",
            "- (human demos)",
            comparison=True,
        )
    ]


def audit(
    train: TrainConfig | dict[str, Any],
    gpus: int,
    exec_horizons: list[int],
    max_steps: int | None = None,
    data: dict[str, Any] | None = None,
    demos: dict[str, Any] | None = None,
) -> list[Row]:
    """Audit rows of one run, grouped by topic. ``train`` is a TrainConfig or the mapping of RUN.yaml keys (data
    paths optional); ``max_steps``: the run's last step; ``data``: the workflow's data section (image_size)."""
    if isinstance(train, dict):
        values = {"data": "-", "lang": "-", "stats": "-", **train}
        train = from_dict(values, source="audited run")
    processes = max(int(gpus), 1)
    model = RDTConfig.preset(train.model)
    return [
        *_model_rows(train, model),
        *_batch_rows(train, processes),
        *_optimiser_rows(train, gpus),
        *_regularisation_rows(train),
        *_length_rows(train, model, max_steps),
        *horizon_rows(exec_horizons, model.pred_horizon),
        *_image_rows(model, data),
        *_demo_rows(demos),
        *_checkpoint_rows(train),
        *_sampler_rows(model),
    ]


def checkpoint_audit(info: dict[str, Any], exec_horizons: list[int]) -> list[Row]:
    """Rows for a checkpoint made elsewhere, from what its evaluation recorded (encoders) and its horizons."""
    return encoder_rows(info.get("text_encoder"), info.get("vision_encoder")) + horizon_rows(exec_horizons)


def deviations(rows: list[Row]) -> list[str]:
    return [r.setting for r in rows if r.flag == DEVIATES]
