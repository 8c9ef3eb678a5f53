"""The policy evaluation calls: (instruction embedding, two frames of three camera slots, unified state) -> a
64-step action chunk in the 128-dim unified action space, batched over environments.

``Policy.from_checkpoint(folder)`` reads the runner with ``rdt.model.checkpoint.load_runner`` and the encoder names
and control frequency from the folder's ``pipeline.json`` (docs/formats.md §5); arguments override them (needed for
checkpoints made elsewhere). Language embeddings are precomputed (``rdt.lang.LanguageTable``); check them with
``table.check_encoder(policy.text_encoder)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rdt.encoders import VisionEncoder, check_vision_fits, load_vision_encoder
from rdt.errors import UserError
from rdt.lang import pad_language
from rdt.model.config import CAMERA_SLOTS, IMG_HISTORY, NUM_VIEWS


class Policy:
    """``act(lang_embeds, images, valid, states, state_mask) -> (B, 64, 128)``: one vision-encoder call and one
    ``runner.predict_action`` call per ``act``. Sampling noise is given, or drawn row by row from ``noise_seeds``
    (evaluation: one seed per episode and call, so an episode's actions do not depend on what it is batched with),
    or else from a generator seeded with ``seed`` (a fixed seed and the same call sequence give the same actions)."""

    def __init__(
        self,
        runner,
        vision: VisionEncoder,
        *,
        text_encoder: str,
        control_frequency: int,
        device: str | torch.device = "cpu",
        seed: int = 0,
        pipeline: dict[str, Any] | None = None,
    ) -> None:
        check_vision_fits(vision, runner.config)
        self.runner = runner.eval()
        self.vision = vision
        self.text_encoder = text_encoder
        self.control_frequency = int(control_frequency)
        self.device = torch.device(device)
        self.dtype = next(runner.parameters()).dtype
        if self.dtype not in (torch.float32, torch.bfloat16):
            raise UserError(f"policy weights dtype {self.dtype}; expected torch.float32 or torch.bfloat16")
        self.pipeline = dict(pipeline or {})
        self.generator = torch.Generator().manual_seed(int(seed))
        with torch.inference_mode(), self._autocast():
            self.vision.background_features()  # cached now, so each act() makes one encoder call

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | Path,
        *,
        vision_encoder: str | None = None,
        text_encoder: str | None = None,
        control_frequency: int | None = None,
        weights: str | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        seed: int = 0,
    ) -> Policy:
        """Build from a checkpoint folder (or a weights file / cached hub id, as ``load_runner`` accepts).

        ``weights``: ``"ema"`` or ``"model"``; default ``"ema"`` when the folder has EMA weights, else ``"model"``.
        ``device``: default ``cuda`` when available. ``dtype``: weights dtype of runner and vision encoder,
        float32 (default) or bfloat16; ``act`` runs under bf16 autocast on CUDA, and on CPU with bf16 weights."""
        from rdt.model.checkpoint import EMA_FILE, load_runner, resolve_folder

        if weights is None:
            folder = resolve_folder(checkpoint)
            weights = "ema" if folder.is_dir() and (folder / EMA_FILE).is_file() else "model"
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        runner, pipeline = load_runner(checkpoint, weights=weights, dtype=dtype, device=device)

        def setting(value: Any, key: str, flag: str) -> Any:
            recorded = pipeline.get(key)
            if value is not None and recorded is not None and not _same_setting(value, recorded):
                raise UserError(
                    f"checkpoint {checkpoint} was trained with {key} {recorded!r} (pipeline.json), not "
                    f"{value!r}; leave out {flag.split('(')[-1].rstrip(')')} (it is for checkpoints "
                    "made elsewhere) or give the same value"
                )
            if value is not None:
                return value
            if pipeline.get(key) is None:
                raise UserError(
                    f"checkpoint {checkpoint}: pipeline.json does not give {key!r} (a checkpoint made "
                    f"elsewhere); pass {flag}"
                )
            return pipeline[key]

        vision_name = setting(vision_encoder, "vision_encoder", "the vision encoder name (--vision-encoder)")
        text_name = setting(text_encoder, "text_encoder", "the text encoder name (--text-encoder)")
        freq = setting(control_frequency, "control_frequency", "the control frequency (--control-frequency)")
        vision = load_vision_encoder(vision_name, device=device, dtype=dtype)
        return cls(
            runner,
            vision,
            text_encoder=text_name,
            control_frequency=int(freq),
            device=device,
            seed=seed,
            pipeline={**pipeline, "weights": weights},
        )

    def act(
        self,
        lang_embeds: Sequence[torch.Tensor],
        images: np.ndarray,
        valid: np.ndarray,
        states: np.ndarray,
        state_mask: np.ndarray,
        noise: torch.Tensor | None = None,
        noise_seeds: Sequence[int] | None = None,
    ) -> np.ndarray:
        """Action chunks (B, 64, 128) float32, zero where ``state_mask`` is 0.

        ``lang_embeds``: B tensors (L_i, D) (padded here with a boolean mask); ``images``: uint8
        (B, 2, 3, H, W, 3) upright frames, axes (history t-1/t, camera exterior/right wrist/left wrist);
        ``valid``: bool (B, 2, 3), False -> background image; ``states``: (B, 128) unified state; ``state_mask``:
        (B, 128) availability (0/1). ``noise``: optional initial noise (B, 64, 128); else with ``noise_seeds`` (B
        ints) row i is drawn from a generator seeded with ``noise_seeds[i]``; else from the policy's generator."""
        cfg = self.runner.config
        b = len(lang_embeds)
        images = np.asarray(images)
        valid = np.asarray(valid, dtype=bool)
        states = np.asarray(states, dtype=np.float32)
        state_mask = np.asarray(state_mask, dtype=np.float32)
        _expect(images, (b, IMG_HISTORY, len(CAMERA_SLOTS), None, None, 3), "images", np.uint8)
        _expect(valid, (b, IMG_HISTORY, len(CAMERA_SLOTS)), "valid")
        _expect(states, (b, cfg.state_token_dim), "states")
        _expect(state_mask, (b, cfg.state_token_dim), "state_mask")
        shape = (b, cfg.pred_horizon, cfg.action_dim)
        if noise is None and noise_seeds is not None:
            if len(noise_seeds) != b:
                raise UserError(f"{len(noise_seeds)} noise seeds for a batch of {b}")
            noise = torch.stack(
                [torch.randn(shape[1:], generator=torch.Generator().manual_seed(int(seed))) for seed in noise_seeds]
            )
        elif noise is None:
            noise = torch.randn(shape, generator=self.generator)
        elif tuple(noise.shape) != shape:
            raise UserError(f"noise has shape {tuple(noise.shape)}; expected {shape}")

        norm = self.pipeline.get("state_norm") or "none"  # as the checkpoint was trained (pipeline.json)
        if norm != "none":
            from rdt.data.stats import normalize_states

            if not self.pipeline.get("dataset_stat"):
                raise UserError(
                    f"the checkpoint was trained with state_norm {norm!r} but its pipeline.json has no dataset_stat"
                )
            states = normalize_states(states, self.pipeline["dataset_stat"], norm)
        lang, lang_mask = pad_language(lang_embeds, cfg.lang_token_dim)
        dev = self.device
        mask = torch.from_numpy(state_mask).to(dev).unsqueeze(1)  # (B,1,128)
        state = torch.from_numpy(states).to(dev).unsqueeze(1) * mask  # (B,1,128)
        freqs = torch.full((b,), self.control_frequency, dtype=torch.long, device=dev)  # (B,)
        with torch.inference_mode(), self._autocast():
            img_tokens = self.vision.encode_views(
                images.reshape(b, NUM_VIEWS, *images.shape[3:]), valid.reshape(b, NUM_VIEWS)
            )  # (B, 6P, Di)
            actions = self.runner.predict_action(
                lang.to(dev), lang_mask.to(dev), img_tokens, state, mask, freqs, noise=noise.to(dev)
            )
        return actions.float().cpu().numpy()

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.device.type == "cuda" or self.dtype == torch.bfloat16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()


def _expect(arr: np.ndarray, shape: tuple, name: str, dtype: type | None = None) -> None:
    ok = arr.ndim == len(shape) and all(s is None or s == a for s, a in zip(shape, arr.shape))
    if not ok or (dtype is not None and arr.dtype != dtype):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise UserError(
            f"policy input {name!r} has shape {arr.shape} dtype {arr.dtype}; expected {want}"
            + (f" {np.dtype(dtype).name}" if dtype is not None else "")
        )


def _same_setting(given: Any, recorded: Any) -> bool:
    """A flag agrees with pipeline.json: equal values, or a local copy of the recorded hub model (a path whose last
    component is the model id's name, e.g. /models/siglip-so400m-patch14-384 for google/siglip-so400m-patch14-384)."""
    if isinstance(recorded, (int, float)) and not isinstance(recorded, bool):
        try:
            return float(given) == float(recorded)
        except (TypeError, ValueError):
            return False
    given, recorded = str(given), str(recorded)
    return given == recorded or (("/" in given) and Path(given.rstrip("/")).name == recorded.rsplit("/", 1)[-1])
