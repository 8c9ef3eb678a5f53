"""Configuration audit: each setting of a run against the RDT-1B fine-tuning recipe.

A run is described by its training settings (the keys of ``RUN.yaml``, rdt/train_config.py), the number of
training processes (GPUs; 0 = one CPU process) and its evaluation execution horizons. Every row states the recipe,
the value (with the formula of derived values, e.g. ``4 x 8 x 8 = 256``) and whether it deviates. The recipe is the
one in ``reference/RDT_FACTS.md`` and the seed comparison document.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rdt.model.config import RDTConfig
from rdt.train_config import TrainConfig, from_dict

OK, DEVIATES = "ok", "DEVIATES"


@dataclass(frozen=True)
class Row:
    setting: str
    recipe: str
    value: str
    formula: str
    ok: bool

    @property
    def flag(self) -> str:
        return OK if self.ok else DEVIATES

    def as_dict(self) -> dict[str, Any]:
        return {"setting": self.setting, "recipe": self.recipe, "value": self.value, "formula": self.formula,
                "flag": self.flag}


def _in_range(value: float, lo: float, hi: float) -> bool:
    return lo <= value <= hi


def audit(train: TrainConfig | dict[str, Any], gpus: int, exec_horizons: list[int]) -> list[Row]:
    """Audit rows of one run. ``train`` is a TrainConfig or the mapping of RUN.yaml keys (data paths optional)."""
    if isinstance(train, dict):
        values = {"data": "-", "lang": "-", "stats": "-", **train}
        train = from_dict(values, source="audited run")
    processes = max(int(gpus), 1)
    model = RDTConfig.preset(train.model)
    per_device, effective = train.per_device_batch_size, train.effective_batch_size
    per_step = per_device * processes
    if effective % per_step == 0:
        accumulation = effective // per_step
        batch_formula = f"{per_device} x {accumulation} x {processes} = {effective}"
    else:
        accumulation = None
        batch_formula = f"{effective} is not divisible by {per_device} x {processes} = {per_step}"
    precision = train.resolved_mixed_precision(cuda=gpus > 0)
    history = model.img_pos_embed_config[0][1][0]
    sched = model.noise_scheduler
    rows = [
        Row("effective batch", "256", str(effective), f"per device x accumulation x processes: {batch_formula}",
            effective == 256 and accumulation is not None),
        Row("per-device batch", "4-8", str(per_device), "", _in_range(per_device, 4, 8)),
        Row("gradient accumulation", "256 / (per device x processes)",
            str(accumulation) if accumulation is not None else "not an integer",
            f"{effective} / ({per_device} x {processes})" if accumulation else batch_formula,
            accumulation is not None and effective == 256),
        Row("learning rate", "1e-4 constant", f"{train.learning_rate:g} constant", "", train.learning_rate == 1e-4),
        Row("warmup steps", "5000-10000", str(train.lr_warmup_steps), "",
            _in_range(train.lr_warmup_steps, 5000, 10000)),
        Row("mixed precision", "bf16", precision, f"mixed_precision={train.mixed_precision}, "
            f"{'GPU' if gpus > 0 else 'CPU'}", precision == "bf16"),
        Row("action chunk", "64", str(model.pred_horizon), f"model preset {train.model}", model.pred_horizon == 64),
    ]
    for h in exec_horizons:
        rows.append(Row(f"exec horizon h{h}", "8-16", str(h), "steps executed per predicted chunk of "
                        f"{model.pred_horizon}", _in_range(h, 8, 16)))
    rows += [
        Row("image history", "2", str(history), "frames per camera (t-1, t)", history == 2),
        Row("checkpoint period", "2000-5000", str(train.checkpointing_period), "",
            _in_range(train.checkpointing_period, 2000, 5000)),
        Row("checkpoints kept", "30-50", str(train.checkpoints_total_limit), "",
            _in_range(train.checkpoints_total_limit, 30, 50)),
        Row("inference steps", "5", str(sched["num_inference_timesteps"]), "DPM-Solver++ steps",
            int(sched["num_inference_timesteps"]) == 5),
        Row("beta schedule", "squaredcos_cap_v2", str(sched["beta_schedule"]), "",
            sched["beta_schedule"] == "squaredcos_cap_v2"),
    ]
    return rows


def deviations(rows: list[Row]) -> list[str]:
    return [r.setting for r in rows if not r.ok]
