"""Checkpoint folders: load (strictly) and save in the released RDT format.

A folder holds ``config.json`` (flat constructor dict) and the weights: ``model.safetensors`` (ours) or
``pytorch_model.bin`` (released, loaded with ``torch.load(weights_only=True)``), optionally
``ema/model.safetensors`` (EMA weights) and ``pipeline.json`` (our pipeline settings, see docs/formats.md §5).
Keys and shapes must match the model exactly: a missing, unexpected or mis-shaped tensor is a UserError, never
silently ignored. A Hugging Face repo id (``robotics-diffusion-transformer/rdt-1b``) is looked up in the local HF
cache; nothing is downloaded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from rdt.errors import UserError
from rdt.layout import BIN_FILE, CONFIG_FILE, EMA_FILE, PIPELINE_FILE, SAFETENSORS_FILE  # noqa: F401 (re-exported)
from rdt.model.config import RDTConfig
from rdt.model.runner import RDTRunner
from rdt.utils.atomic import atomic_dir
from rdt.utils.files import read_json

WEIGHT_KINDS = ("model", "ema")


def _fetch_hint(name: str) -> str:
    repo = name if "/" in name and not Path(name).is_absolute() else "robotics-diffusion-transformer/rdt-1b"
    return (
        f"fetch a released checkpoint with `hf download {repo} --local-dir DIR` "
        "and pass DIR, or pass a folder written by `python -m rdt train`"
    )


def resolve_folder(name: str | Path) -> Path:
    """A local folder/file path, or a hub id found in the local Hugging Face cache."""
    path = Path(name)
    if path.exists():
        return path
    text = str(name)
    looks_like_repo_id = text.count("/") == 1 and not text.startswith((".", "/", "~")) and ":" not in text
    if looks_like_repo_id:
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(text, local_files_only=True))
        except Exception:  # noqa: BLE001 - any failure means "not in the local cache"
            raise UserError(
                f"checkpoint {text!r} is neither a local path nor in the local Hugging Face cache; {_fetch_hint(text)}"
            ) from None
    raise UserError(f"checkpoint path {path} does not exist; {_fetch_hint(text)}")


def _weights_file(folder: Path, weights: str) -> Path:
    if weights not in WEIGHT_KINDS:
        raise UserError(f"weights={weights!r}; expected one of {WEIGHT_KINDS}")
    if weights == "ema":
        f = folder / EMA_FILE
        if not f.is_file():
            raise UserError(f"{f} not found: this checkpoint has no EMA weights (use weights='model')")
        return f
    for name in (SAFETENSORS_FILE, BIN_FILE):
        if (folder / name).is_file():
            return folder / name
    raise UserError(f"{folder} holds neither {SAFETENSORS_FILE} nor {BIN_FILE}; {_fetch_hint(str(folder))}")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or a ``torch.save`` file (``weights_only=True``; a DeepSpeed
    ``{"module": state_dict}`` wrapper is unwrapped)."""
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: weights file not found") from None
    except Exception as e:  # noqa: BLE001 - corrupt/unsupported files: report the file and the reason
        raise UserError(f"{path}: cannot read weights ({type(e).__name__}: {e})") from None
    if isinstance(obj, Mapping) and "module" in obj and isinstance(obj["module"], Mapping):
        obj = obj["module"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{path}: expected a state_dict (mapping of tensor names to tensors)")
    return dict(obj)


def check_state_dict(expected: Mapping[str, torch.Tensor], got: Mapping[str, torch.Tensor], source: str) -> None:
    """UserError listing (up to 5 of each) missing keys, unexpected keys and shape mismatches."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shapes = [
        f"{k}: file {tuple(got[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in got and tuple(got[k].shape) != tuple(v.shape)
    ]
    problems = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
        if items:
            more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
            problems.append(f"{len(items)} {label}: {', '.join(items[:5])}{more}")
    if problems:
        raise UserError(f"{source} does not match the model in config.json: " + "; ".join(problems))


def _find_config(weights_path: Path) -> Path:
    for folder in (weights_path.parent, weights_path.parent.parent):
        if (folder / CONFIG_FILE).is_file():
            return folder / CONFIG_FILE
    raise UserError(f"no {CONFIG_FILE} next to {weights_path} or in its parent folder")


def load_runner(
    folder_or_file: str | Path,
    weights: str = "model",
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> tuple[RDTRunner, dict[str, Any]]:
    """Load a checkpoint strictly -> (runner in eval mode, pipeline.json dict or {}).

    ``folder_or_file``: a checkpoint folder, a weights file inside one, or a hub id in the local HF cache.
    ``weights``: ``"model"`` (model.safetensors, else pytorch_model.bin) or ``"ema"`` (ema/model.safetensors).
    Floating-point tensors are cast to ``dtype``."""
    path = resolve_folder(folder_or_file)
    if path.is_dir():
        folder = path
        if not (folder / CONFIG_FILE).is_file():
            raise UserError(
                f"{folder / CONFIG_FILE} not found (a checkpoint folder needs the flat RDT config); "
                f"{_fetch_hint(str(folder_or_file))}"
            )
        config_path, weights_path = folder / CONFIG_FILE, _weights_file(folder, weights)
    else:
        weights_path, config_path = path, _find_config(path)
        folder = config_path.parent
    config = RDTConfig.load(config_path)
    state = read_state_dict(weights_path)
    with torch.device("meta"):
        runner = RDTRunner(config)
    check_state_dict(runner.state_dict(), state, str(weights_path))
    state = {k: (v.to(dtype) if v.is_floating_point() else v).to(device).contiguous() for k, v in state.items()}
    runner.load_state_dict(state, strict=True, assign=True)
    runner.eval()
    pipeline: dict[str, Any] = {}
    if (folder / PIPELINE_FILE).is_file():
        pipeline = read_json(folder / PIPELINE_FILE)
    return runner, pipeline


def _tensors_for_file(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}


def save_checkpoint(
    folder: str | Path,
    runner_or_state_dict: RDTRunner | Mapping[str, torch.Tensor],
    config: RDTConfig,
    ema_state_dict: Mapping[str, torch.Tensor] | None = None,
    pipeline: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint folder atomically: config.json (flat, as released), model.safetensors,
    ema/model.safetensors (when given) and pipeline.json (when given). Keys are checked against ``config``."""
    folder = Path(folder)
    state = (
        runner_or_state_dict.state_dict()
        if isinstance(runner_or_state_dict, torch.nn.Module)
        else dict(runner_or_state_dict)
    )
    with torch.device("meta"):
        expected = RDTRunner(config).state_dict()
    check_state_dict(expected, state, "state_dict to save")
    if ema_state_dict is not None:
        check_state_dict(expected, ema_state_dict, "EMA state_dict to save")
    with atomic_dir(folder) as tmp:
        (tmp / CONFIG_FILE).write_text(config.to_json())
        save_file(_tensors_for_file(state), str(tmp / SAFETENSORS_FILE), metadata={"format": "pt"})
        if ema_state_dict is not None:
            (tmp / "ema").mkdir()
            save_file(_tensors_for_file(ema_state_dict), str(tmp / EMA_FILE), metadata={"format": "pt"})
        if pipeline is not None:
            (tmp / PIPELINE_FILE).write_text(json.dumps(dict(pipeline), indent=2) + "\n")
    return folder
