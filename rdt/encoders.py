"""The frozen encoders RDT conditions on: T5 for instructions, SigLIP for camera images.

Names (``load_text_encoder`` / ``load_vision_encoder``):

- ``tiny``: small random-weight models built from configs (no files, no download), deterministic given ``seed``:
  a 2-layer T5 encoder (d_model 32) with ByT5's byte-level tokenizer (max 256 tokens) and a 2-layer SigLIP vision
  model (64x64 images, 16x16 patches -> 16 tokens of 32 dims). They match ``RDTConfig.preset("tiny")``.
- anything else: a Hugging Face model id (``google/t5-v1_1-xxl``, ``google/siglip-so400m-patch14-384``) found in
  the local HF cache, or a local folder holding the model. Nothing is ever downloaded; a model that is not there is
  one ``UserError`` naming it and the command that fetches it.

Text features are T5's ``last_hidden_state`` (after the final layer norm) of the tokens including ``</s>``, padding
removed. Image features are SigLIP's ``last_hidden_state`` (after ``post_layernorm``), (N, P, D) in raster order.
Image preprocessing is RDT's: pad to a square canvas of the processor's mean colour (image centred), resize bicubic
to the encoder's image size, scale to [0, 1], normalise with the processor's mean/std; a missing image (``None``)
is the background image, a solid square of the mean colour.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rdt.errors import UserError
from rdt.model.config import NUM_VIEWS
from rdt.utils.files import read_json

TINY = "tiny"
T5_XXL = "google/t5-v1_1-xxl"
SIGLIP_SO400M = "google/siglip-so400m-patch14-384"
T5_MAX_LENGTH = 1024  # RDT's tokenizer limit (model_max_length=1024, truncation=True)
TINY_TEXT_MAX_LENGTH = 256  # = RDTConfig.preset("tiny").max_lang_cond_len
SIGLIP_MEAN_STD = 0.5  # SiglipImageProcessor default image_mean = image_std = (0.5, 0.5, 0.5)

_TINY_TEXT = dict(d_model=32, num_layers=2, num_heads=2, d_kv=16, d_ff=64)
_TINY_VISION = dict(
    image_size=64, patch_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
)


# ================================================================================================ preprocessing
class ImagePreprocessor:
    """RDT's image preprocessing as a picklable callable (numpy/torch only, usable in DataLoader workers).

    ``pre(images) -> Tensor (N, 3, S, S) float32`` where ``images`` is a uint8 array (N, H, W, 3) or a sequence
    of uint8 arrays (H, W, 3) and ``None`` (missing image -> background). Steps, as ``expand2square`` +
    ``SiglipImageProcessor`` do them: centre on a square canvas of colour ``int(255 * mean)`` (offset
    ``(long - short) // 2``); resize to ``S x S`` bicubic as PIL does (antialiased, a=-0.5, horizontal then
    vertical pass, each rounded to uint8 values); divide by 255, subtract ``mean``, divide by ``std``. Images of
    equal shape are processed as one batch.
    """

    def __init__(
        self,
        image_size: int,
        mean: Sequence[float] = (SIGLIP_MEAN_STD,) * 3,
        std: Sequence[float] = (SIGLIP_MEAN_STD,) * 3,
    ) -> None:
        self.image_size = int(image_size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        # RDT: tuple(int(x * 255) for x in processor.image_mean) -> (127, 127, 127) for mean 0.5
        self.background_color = tuple(int(m * 255) for m in self.mean)

    def __call__(self, images: np.ndarray | Sequence[np.ndarray | None]) -> torch.Tensor:
        if isinstance(images, np.ndarray):
            _check_uint8_images(images, "images", batched=True)
            return self._process_batch(images)
        items = list(images)
        out = torch.empty(len(items), 3, self.image_size, self.image_size)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, img in enumerate(items):
            if img is None:
                out[i] = self.background()
            else:
                _check_uint8_images(img, f"image {i}", batched=False)
                groups.setdefault(img.shape, []).append(i)
        for idx in groups.values():
            out[idx] = self._process_batch(np.stack([items[i] for i in idx]))
        return out

    def background(self) -> torch.Tensor:
        """The preprocessed background image (3, S, S): the mean colour, normalised."""
        return self._normalise(
            torch.tensor(self.background_color, dtype=torch.float32)
            .view(1, 3, 1, 1)
            .expand(1, 3, self.image_size, self.image_size)
        )[0]

    def _process_batch(self, images: np.ndarray) -> torch.Tensor:
        """uint8 (N, H, W, 3) -> float32 (N, 3, S, S)."""
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()  # (N,3,H,W), 0..255
        n, _, h, w = x.shape
        if h != w:
            side = max(h, w)
            canvas = torch.tensor(self.background_color, dtype=torch.float32).view(1, 3, 1, 1)
            canvas = canvas.expand(n, 3, side, side).clone()
            top, left = (side - h) // 2, (side - w) // 2
            canvas[:, :, top : top + h, left : left + w] = x
            x = canvas
        if x.shape[-1] != self.image_size:
            # PIL's order: horizontal pass, round/clip to uint8 values, vertical pass, round/clip
            s = self.image_size
            for size in ((x.shape[2], s), (s, s)):
                x = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)
                x = x.round_().clamp_(0, 255)
        return self._normalise(x)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, 3, 1, 1)
        return (x / 255.0 - mean) / std

    def __repr__(self) -> str:
        return f"ImagePreprocessor(image_size={self.image_size}, mean={self.mean}, std={self.std})"


def _check_uint8_images(images: np.ndarray, what: str, batched: bool) -> None:
    ndim = 4 if batched else 3
    shape = "(N, H, W, 3)" if batched else "(H, W, 3)"
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != ndim or images.shape[-1] != 3:
        desc = (
            f"{type(images).__name__}" if not isinstance(images, np.ndarray) else f"array {images.shape} {images.dtype}"
        )
        raise UserError(f"{what}: got {desc}; expected a uint8 RGB array {shape}")


# ================================================================================================ encoders
class TextEncoder:
    """A frozen T5 encoder and its tokenizer. ``encode(texts) -> list[Tensor (L_i, D)]`` (float32, CPU)."""

    def __init__(self, name: str, tokenizer, model, max_length: int) -> None:
        self.name = name
        self.tokenizer = tokenizer
        self.model = model.eval().requires_grad_(False)
        self.max_length = int(max_length)
        self.hidden_size = int(model.config.d_model)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 8) -> list[torch.Tensor]:
        """One (L_i, D) tensor per text: the tokens incl. ``</s>``, padding removed, truncated at ``max_length``.
        Texts are encoded ``batch_size`` at a time, padded to the longest of their batch."""
        out: list[torch.Tensor] = []
        for start in range(0, len(texts), batch_size):
            batch = list(texts[start : start + batch_size])
            tok = self.tokenizer(
                batch,
                padding="longest",
                truncation=True,
                max_length=self.max_length,
                add_special_tokens=True,
                return_tensors="pt",
            )
            ids = tok["input_ids"].to(self.device)
            mask = tok["attention_mask"].to(self.device)
            hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state  # (b, L, D)
            for row, m in zip(hidden, mask.bool()):
                out.append(row[m].float().cpu())
        return out


class VisionEncoder:
    """A frozen SigLIP vision model with RDT's preprocessing.

    ``preprocess(images) -> (N, 3, S, S)``; ``encode(pixels) -> (N, P, D)``;
    ``encode_views(images, valid) -> (B, 6 * P, D)`` for RDT's six image slots.
    """

    def __init__(self, name: str, model, preprocessor: ImagePreprocessor) -> None:
        self.name = name
        self.model = model.eval().requires_grad_(False)
        self.preprocessor = preprocessor
        cfg = model.config
        self.image_size = int(cfg.image_size)
        self.num_patches = (cfg.image_size // cfg.patch_size) ** 2
        self.hidden_size = int(cfg.hidden_size)
        self._background: tuple[tuple, torch.Tensor] | None = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def preprocess(self, images: np.ndarray | Sequence[np.ndarray | None]) -> torch.Tensor:
        return self.preprocessor(images)

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Preprocessed images (N, 3, S, S) -> features (N, P, D) on the encoder's device.
        (``no_grad``, not ``inference_mode``: training feeds the features to trainable adaptors.)"""
        if pixels.ndim != 4 or tuple(pixels.shape[1:]) != (3, self.image_size, self.image_size):
            raise UserError(
                f"vision encoder {self.name!r}: pixels have shape {tuple(pixels.shape)}; expected "
                f"(N, 3, {self.image_size}, {self.image_size}) (use .preprocess first)"
            )
        pixels = pixels.to(self.device, self.dtype, non_blocking=True)
        return self.model(pixel_values=pixels).last_hidden_state

    @torch.no_grad()
    def encode_views(self, images: np.ndarray | torch.Tensor, valid: np.ndarray | torch.Tensor) -> torch.Tensor:
        """RDT's image tokens (B, 6 * P, D) from six views per sample.

        ``images``: uint8 (B, 6, H, W, 3) frames or preprocessed float (B, 6, 3, S, S), the six views in RDT's
        order ``[ext_{t-1}, right_wrist_{t-1}, left_wrist_{t-1}, ext_t, right_wrist_t, left_wrist_t]`` (history
        major, then camera; an array (B, 2, 3, ...) reshaped to (B, 6, ...) is exactly this). ``valid`` (B, 6)
        bool: ``False`` (missing camera, history frame before the episode start, masked condition) uses the
        background image. Only the valid views go through the encoder, in one call; the background features are
        computed once and reused (the same values RDT gets by encoding the background image each time).
        """
        valid_t = torch.as_tensor(np.asarray(valid) if not torch.is_tensor(valid) else valid).bool().cpu()
        if valid_t.ndim != 2 or valid_t.shape[1] != NUM_VIEWS:
            raise UserError(f"valid mask has shape {tuple(valid_t.shape)}; expected (B, {NUM_VIEWS})")
        b = valid_t.shape[0]
        if isinstance(images, np.ndarray):
            if images.ndim != 5 or images.shape[:2] != (b, NUM_VIEWS):
                raise UserError(f"images have shape {images.shape}; expected (B={b}, {NUM_VIEWS}, H, W, 3) uint8")
            flat = images.reshape(b * NUM_VIEWS, *images.shape[2:])
            keep = valid_t.reshape(-1).numpy()
            pixels = self.preprocess(flat[keep]) if keep.any() else None
        else:
            if images.ndim != 5 or tuple(images.shape[:2]) != (b, NUM_VIEWS):
                raise UserError(f"pixels have shape {tuple(images.shape)}; expected (B={b}, {NUM_VIEWS}, 3, S, S)")
            keep = valid_t.reshape(-1).to(images.device)
            pixels = images.reshape(b * NUM_VIEWS, *images.shape[2:])[keep] if bool(keep.any()) else None
        background = self.background_features()  # (P, D)
        feats = background.expand(b * NUM_VIEWS, -1, -1).clone()  # (B*6, P, D)
        if pixels is not None:
            encoded = self.encode(pixels)
            feats = feats.to(encoded.dtype)
            feats[valid_t.reshape(-1).to(feats.device)] = encoded
        return feats.reshape(b, NUM_VIEWS * self.num_patches, self.hidden_size)

    def background_features(self) -> torch.Tensor:
        """Features (P, D) of the background image, cached per device, dtype, autocast and inference mode."""
        autocast = torch.is_autocast_enabled(self.device.type)
        key = (
            self.device,
            self.dtype,
            autocast,
            torch.get_autocast_dtype(self.device.type) if autocast else None,
            torch.is_inference_mode_enabled(),
        )
        if self._background is None or self._background[0] != key:
            feats = self.encode(self.preprocessor.background().unsqueeze(0))[0]
            self._background = (key, feats)
        return self._background[1]


# ================================================================================================ fit to a model
def check_vision_fits(vision: VisionEncoder, config, model: str = "the model") -> None:
    """UserError unless ``vision``'s tokens are the image condition of the RDT ``config`` (``model`` names it):
    ``NUM_VIEWS`` x patches tokens of ``img_token_dim`` dims."""
    if vision.hidden_size != config.img_token_dim or NUM_VIEWS * vision.num_patches != config.img_cond_len:
        raise UserError(
            f"vision encoder {vision.name!r} gives {NUM_VIEWS} x {vision.num_patches} tokens of "
            f"{vision.hidden_size} dims, but {model} expects img_cond_len={config.img_cond_len} image "
            f"tokens of img_token_dim={config.img_token_dim} (pass the vision encoder the model was "
            "trained with)"
        )


def check_text_fits(hidden_size: int, config, source: str, model: str = "the model") -> None:
    """UserError unless language embeddings of ``hidden_size`` dims (from ``source``, e.g. a language table) fit
    the RDT ``config``'s ``lang_token_dim`` (``model`` names it)."""
    if hidden_size != config.lang_token_dim:
        raise UserError(
            f"{source}: embeddings have {hidden_size} dims, but {model} expects "
            f"lang_token_dim={config.lang_token_dim} (were they made with the model's text encoder?)"
        )


# ================================================================================================ loading
def _hide_unloadable_torchvision() -> None:
    """Make a torchvision that cannot be imported count as absent for transformers.

    PyPI's torchvision wheel is a CUDA build; next to a CPU-only torch (the CPU set-up) its compiled operators do
    not register and ``import torchvision`` raises. transformers imports torchvision whenever it is installed, so
    every model import would fail. A ``None`` entry in ``sys.modules`` is Python's own "not importable" marker:
    transformers then uses its PIL/numpy paths (the encoders here need neither)."""
    if "torchvision" in sys.modules:
        return
    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001 - any failure means "unusable"
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        sys.modules["torchvision"] = None  # type: ignore[assignment]


def load_text_encoder(
    name: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, seed: int = 0
) -> TextEncoder:
    """``tiny`` (built from a config, weights from ``seed``) or a T5 model id / local folder (local files only)."""
    _hide_unloadable_torchvision()
    from transformers import ByT5Tokenizer, T5Config, T5EncoderModel

    if name == TINY:
        tokenizer = ByT5Tokenizer()
        config = T5Config(
            vocab_size=len(tokenizer),
            feed_forward_proj="gated-gelu",
            dropout_rate=0.0,
            is_encoder_decoder=False,
            use_cache=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **_TINY_TEXT,
        )
        with torch.random.fork_rng(devices=[]):
            model = T5EncoderModel(config)
        _seed_weights(model, seed)
        return TextEncoder(TINY, tokenizer, model.to(device=device, dtype=dtype), TINY_TEXT_MAX_LENGTH)

    from transformers import AutoTokenizer

    source = _local_source(name, "text")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        model = _load_part(T5EncoderModel, source, dtype, name)
    except (OSError, ValueError) as e:
        raise _missing_model(name, "text", e) from None
    return TextEncoder(name, tokenizer, model.to(device), T5_MAX_LENGTH)


def load_vision_encoder(
    name: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, seed: int = 0
) -> VisionEncoder:
    """``tiny`` (built from a config, weights from ``seed``) or a SigLIP model id / local folder (local files
    only; the processor's mean/std are read from its ``preprocessor_config.json`` when present)."""
    _hide_unloadable_torchvision()
    from transformers import SiglipVisionConfig, SiglipVisionModel

    if name == TINY:
        config = SiglipVisionConfig(vision_use_head=False, attention_dropout=0.0, **_TINY_VISION)
        with torch.random.fork_rng(devices=[]):
            model = SiglipVisionModel(config)
        _seed_weights(model, seed)
        return VisionEncoder(TINY, model.to(device=device, dtype=dtype), ImagePreprocessor(config.image_size))

    source = _local_source(name, "vision")
    try:
        model = _load_part(SiglipVisionModel, source, dtype, name)
    except (OSError, ValueError) as e:
        raise _missing_model(name, "vision", e) from None
    mean, std = _processor_mean_std(source)
    return VisionEncoder(name, model.to(device), ImagePreprocessor(model.config.image_size, mean, std))


def _load_part(cls, source: str, dtype: torch.dtype, name: str):
    """One tower of a released checkpoint (T5's encoder of the encoder-decoder, SigLIP's vision tower of the dual
    model). The other tower's weights are expected leftovers, so transformers' load report (a 25-line UNEXPECTED list
    in every log) is silenced; a weight the tower needs and the file lacks is an error naming it."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model, info = cls.from_pretrained(source, local_files_only=True, dtype=dtype, output_loading_info=True)
    finally:
        hf_logging.set_verbosity(level)
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        raise UserError(
            f"{name} ({source}): the checkpoint lacks {len(missing)} weight(s) of {cls.__name__}, e.g. {missing[:3]}"
        )
    return model


def _seed_weights(model: torch.nn.Module, seed: int) -> None:
    """Overwrite every parameter from a local generator (global RNG untouched): normal(0, 0.02) for weight
    matrices and embeddings, 1 for 1-D weights (norms), 0 for biases. Same seed -> same weights everywhere."""
    gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for pname, p in sorted(model.named_parameters()):
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float32) * 0.02)
            elif pname.endswith("bias"):
                p.zero_()
            else:
                p.fill_(1.0)


def _local_source(name: str, kind: str) -> str:
    """A local folder as is; otherwise the id (resolved from the HF cache by ``local_files_only``)."""
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise UserError(
            f"{kind} encoder folder {name!r} does not exist; pass an existing folder holding the "
            f"model, a Hugging Face id in the local cache, or 'tiny'"
        )
    return name


def _missing_model(name: str, kind: str, err: Exception) -> UserError:
    if Path(name).expanduser().is_dir():
        return UserError(
            f"{kind} encoder folder {name!r} could not be loaded: {str(err).splitlines()[0]} "
            f"(expected a saved Hugging Face model: config.json, weights and, for T5, the tokenizer)"
        )
    cache = os.environ.get("HF_HUB_CACHE") or os.environ.get("HF_HOME") or "~/.cache/huggingface"
    return UserError(
        f"{kind} encoder {name!r} is not available locally: not in the Hugging Face cache ({cache}) and not a "
        f"folder; nothing is downloaded. Fetch it on a machine with network access with "
        f"`hf download {name}` (same HF_HOME), or pass the path of a folder holding it, or use 'tiny'"
    )


def _processor_mean_std(source: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    default = ((SIGLIP_MEAN_STD,) * 3, (SIGLIP_MEAN_STD,) * 3)
    try:
        from transformers.utils import cached_file

        path = cached_file(
            source, "preprocessor_config.json", local_files_only=True, _raise_exceptions_for_missing_entries=False
        )
    except OSError:
        return default
    if not path:
        return default
    cfg = read_json(path)
    return tuple(cfg.get("image_mean", default[0])), tuple(cfg.get("image_std", default[1]))
