"""RDT model configuration: presets and the flat ``config.json`` form of the released checkpoints.

The released ``robotics-diffusion-transformer/rdt-1b`` folder stores the runner's constructor arguments as one flat
JSON dict (``action_dim``, ``pred_horizon``, token dims, condition lengths, positional-embedding configs, and the
``model:`` section of ``configs/base.yaml`` merged in: ``rdt``, the three adaptors, ``noise_scheduler``, ``ema``).
``RDTConfig.to_flat()`` writes exactly that dict; ``RDTConfig.from_flat()`` reads it back.

One setting is ours: ``rms_norm``. ``"unbiased_var"`` (default) reproduces the normalisation the original code ran
with (timm 1.0.3: ``x * rsqrt(var_unbiased(x) + 1e-6) * w``); ``"mean_square"`` is the textbook RMSNorm
(``x * rsqrt(mean(x^2) + 1e-6) * w``). It is written into the ``rdt`` section only when it differs from the default,
where the original code ignores it, so default configs stay byte-identical to the released file.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rdt.errors import UserError
from rdt.utils.files import read_json

#: architecture presets (:meth:`RDTConfig.preset`): the tiny test model and the two released ones
PRESETS = ("tiny", "rdt-170m", "rdt-1b")
#: RDT's action chunk: steps predicted per call (every preset's ``pred_horizon``)
PRED_HORIZON = 64
#: RDT's image condition: ``IMG_HISTORY`` frames (t-1, t) of each of the ``CAMERA_SLOTS``, history-major
#: (``[ext_{t-1}, right_wrist_{t-1}, left_wrist_{t-1}, ext_t, right_wrist_t, left_wrist_t]``)
IMG_HISTORY = 2
CAMERA_SLOTS = ("exterior", "right_wrist", "left_wrist")
NUM_VIEWS = IMG_HISTORY * len(CAMERA_SLOTS)
RMS_NORM_KINDS = ("unbiased_var", "mean_square")
ADAPTOR_NAMES = ("linear", "mlp1x_gelu", "mlp2x_gelu", "mlp3x_gelu", "mlp4x_gelu")


def _default_scheduler() -> dict[str, Any]:
    return {
        "beta_schedule": "squaredcos_cap_v2",
        "clip_sample": False,
        "num_inference_timesteps": 5,
        "num_train_timesteps": 1000,
        "prediction_type": "sample",
        "type": "ddpm",
    }


def _default_ema() -> dict[str, Any]:
    return {"inv_gamma": 1.0, "max_value": 0.9999, "min_value": 0.0, "power": 0.75, "update_after_step": 0}


@dataclass
class RDTConfig:
    """Every constructor setting of the RDT runner. Defaults are RDT-1B's (``configs/base.yaml``)."""

    hidden_size: int = 2048
    depth: int = 28
    num_heads: int = 32
    action_dim: int = 128
    pred_horizon: int = PRED_HORIZON
    state_token_dim: int = 128
    lang_token_dim: int = 4096
    img_token_dim: int = 1152
    max_lang_cond_len: int = 1024
    img_cond_len: int = NUM_VIEWS * 729  # 4374: 729 SigLIP patches per view
    # [(name, length or grid)]; a negative length/axis = tokens without position information along it
    lang_pos_embed_config: list = field(default_factory=lambda: [("lang", -1024)])
    img_pos_embed_config: list = field(default_factory=lambda: [("image", _views(729))])
    lang_adaptor: str = "mlp2x_gelu"
    img_adaptor: str = "mlp2x_gelu"
    state_adaptor: str = "mlp3x_gelu"
    cond_pos_embed_type: str = "multimodal"
    noise_scheduler: dict = field(default_factory=_default_scheduler)
    ema: dict = field(default_factory=_default_ema)
    rms_norm: str = "unbiased_var"

    def __post_init__(self) -> None:
        self.lang_pos_embed_config = [(str(n), _as_len(v)) for n, v in self.lang_pos_embed_config]
        self.img_pos_embed_config = [(str(n), _as_len(v)) for n, v in self.img_pos_embed_config]
        self.validate()

    # ------------------------------------------------------------------------------------------ presets
    @classmethod
    def preset(cls, name: str) -> RDTConfig:
        """``tiny`` (tests / embedded default; matches the tiny encoders: 32-dim tokens, 16 patches per image),
        ``rdt-170m`` or ``rdt-1b`` (the released architectures)."""
        if name == "rdt-1b":
            return cls()
        if name == "rdt-170m":
            return cls(hidden_size=1024, depth=14, num_heads=32)
        if name == "tiny":
            return cls(
                hidden_size=128,
                depth=4,
                num_heads=4,
                lang_token_dim=32,
                img_token_dim=32,
                max_lang_cond_len=256,
                img_cond_len=NUM_VIEWS * 16,
                lang_pos_embed_config=[("lang", -256)],
                img_pos_embed_config=[("image", _views(16))],
            )
        raise UserError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}")

    # ------------------------------------------------------------------------------------------ derived
    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def num_train_timesteps(self) -> int:
        return int(self.noise_scheduler["num_train_timesteps"])

    @property
    def num_inference_timesteps(self) -> int:
        return int(self.noise_scheduler["num_inference_timesteps"])

    def replace(self, **changes: Any) -> RDTConfig:
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        """UserError naming the first inconsistent setting."""

        def bad(key: str, expected: str) -> UserError:
            return UserError(f"model setting {key}={getattr(self, key, None)!r}; expected {expected}")

        for key in (
            "num_heads",
            "depth",
            "action_dim",
            "pred_horizon",
            "state_token_dim",
            "lang_token_dim",
            "img_token_dim",
            "max_lang_cond_len",
            "img_cond_len",
        ):
            if getattr(self, key) <= 0:
                raise bad(key, "a positive integer")
        if self.hidden_size <= 0 or self.hidden_size % self.num_heads:
            raise bad("hidden_size", f"a positive multiple of num_heads={self.num_heads}")
        if (self.hidden_size // self.num_heads) % 2 or self.hidden_size % 4:
            raise bad("hidden_size", "divisible by 4 with an even head dim (sin-cos embeddings)")
        for key in ("lang_adaptor", "img_adaptor", "state_adaptor"):
            if getattr(self, key) not in ADAPTOR_NAMES:
                raise bad(key, f"one of {ADAPTOR_NAMES}")
        if self.rms_norm not in RMS_NORM_KINDS:
            raise bad("rms_norm", f"one of {RMS_NORM_KINDS}")
        sched = self.noise_scheduler
        if sched.get("prediction_type") not in ("sample", "epsilon"):
            raise UserError(
                f"model setting noise_scheduler.prediction_type={sched.get('prediction_type')!r}; "
                "expected 'sample' or 'epsilon'"
            )
        if _cond_len(self.img_pos_embed_config) != self.img_cond_len:
            raise bad("img_cond_len", f"the token count of img_pos_embed_config {self.img_pos_embed_config}")
        if _cond_len(self.lang_pos_embed_config) != self.max_lang_cond_len:
            raise bad("max_lang_cond_len", f"the token count of lang_pos_embed_config {self.lang_pos_embed_config}")

    # ------------------------------------------------------------------------------------------ flat form
    def to_flat(self) -> dict[str, Any]:
        """The flat constructor dict of the released ``config.json`` (keys sorted as the released file)."""
        rdt = {
            "cond_pos_embed_type": self.cond_pos_embed_type,
            "depth": self.depth,
            "hidden_size": self.hidden_size,
            "num_heads": self.num_heads,
        }
        if self.rms_norm != "unbiased_var":
            rdt["rms_norm"] = self.rms_norm
        flat = {
            "action_dim": self.action_dim,
            "ema": dict(self.ema),
            "img_adaptor": self.img_adaptor,
            "img_cond_len": self.img_cond_len,
            "img_pos_embed_config": [[n, list(v) if isinstance(v, tuple) else v] for n, v in self.img_pos_embed_config],
            "img_token_dim": self.img_token_dim,
            "lang_adaptor": self.lang_adaptor,
            "lang_pos_embed_config": [
                [n, list(v) if isinstance(v, tuple) else v] for n, v in self.lang_pos_embed_config
            ],
            "lang_token_dim": self.lang_token_dim,
            "max_lang_cond_len": self.max_lang_cond_len,
            "noise_scheduler": dict(self.noise_scheduler),
            "pred_horizon": self.pred_horizon,
            "rdt": rdt,
            "state_adaptor": self.state_adaptor,
            "state_token_dim": self.state_token_dim,
        }
        return json.loads(json.dumps(flat, sort_keys=True))

    def to_json(self) -> str:
        """``config.json`` text as the released file is written (``indent=2, sort_keys=True``)."""
        return json.dumps(self.to_flat(), indent=2, sort_keys=True)

    @classmethod
    def from_flat(cls, flat: dict[str, Any], source: str = "config.json") -> RDTConfig:
        """Read the flat dict (released ``config.json`` or ours). Unknown top-level keys are ignored, as the
        original loader does; a missing or mistyped key is a UserError naming it and ``source``."""
        if not isinstance(flat, dict):
            raise UserError(f"{source}: expected a JSON object with the RDT constructor arguments")

        def get(d: dict, key: str, kind: type, where: str = "") -> Any:
            if key not in d:
                raise UserError(
                    f"{source}: missing key {where}{key!r} (expected the flat RDT config.json form, "
                    "as in robotics-diffusion-transformer/rdt-1b)"
                )
            v = d[key]
            if kind is int and (isinstance(v, bool) or not isinstance(v, int)):
                raise UserError(f"{source}: key {where}{key!r} = {v!r}; expected an integer")
            if kind is not int and not isinstance(v, kind):
                raise UserError(f"{source}: key {where}{key!r} = {v!r}; expected a {kind.__name__}")
            return v

        rdt = get(flat, "rdt", dict)
        sched = dict(_default_scheduler())
        sched.update(get(flat, "noise_scheduler", dict))
        ema = dict(_default_ema())
        ema.update(flat.get("ema") or {})
        try:
            lang_pe = [(n, v) for n, v in get(flat, "lang_pos_embed_config", list)]
            img_pe = [(n, v) for n, v in get(flat, "img_pos_embed_config", list)]
        except (TypeError, ValueError) as e:
            raise UserError(f"{source}: positional embedding configs must be lists of [name, length]: {e}") from None
        values = dict(
            hidden_size=get(rdt, "hidden_size", int, "rdt."),
            depth=get(rdt, "depth", int, "rdt."),
            num_heads=get(rdt, "num_heads", int, "rdt."),
            cond_pos_embed_type=rdt.get("cond_pos_embed_type", "multimodal"),
            rms_norm=rdt.get("rms_norm", "unbiased_var"),
            action_dim=get(flat, "action_dim", int),
            pred_horizon=get(flat, "pred_horizon", int),
            state_token_dim=get(flat, "state_token_dim", int),
            lang_token_dim=get(flat, "lang_token_dim", int),
            img_token_dim=get(flat, "img_token_dim", int),
            max_lang_cond_len=get(flat, "max_lang_cond_len", int),
            img_cond_len=get(flat, "img_cond_len", int),
            lang_pos_embed_config=lang_pe,
            img_pos_embed_config=img_pe,
            lang_adaptor=get(flat, "lang_adaptor", str),
            img_adaptor=get(flat, "img_adaptor", str),
            state_adaptor=get(flat, "state_adaptor", str),
            noise_scheduler=sched,
            ema=ema,
        )
        try:
            return cls(**values)
        except (UserError, TypeError, ValueError) as e:
            raise UserError(f"{source}: {e}") from None

    @classmethod
    def load(cls, path: str | Path) -> RDTConfig:
        return cls.from_flat(read_json(path, "config.json not found"), source=str(path))


def _views(patches: int) -> tuple[int, int, int]:
    """The image grid of the positional embedding: history x camera embedded, the ``patches`` of a view share it."""
    return (IMG_HISTORY, len(CAMERA_SLOTS), -patches)


def _as_len(v: Any) -> int | tuple[int, ...]:
    """JSON lists become tuples (grid sizes); ints stay ints."""
    if isinstance(v, (list, tuple)):
        return tuple(int(x) for x in v)
    return int(v)


def _cond_len(pos_embed_config: list) -> int:
    """Number of condition tokens described by a positional-embedding config."""
    total = 0
    for _, v in pos_embed_config:
        if isinstance(v, tuple):
            n = 1
            for x in v:
                n *= abs(x)
            total += n
        else:
            total += abs(v)
    return total
