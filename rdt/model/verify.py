"""Load a checkpoint folder strictly and print a summary (weights file, parameter count, architecture).

Every weights file in the folder is checked (model.safetensors or pytorch_model.bin, and the EMA weights
ema/model.safetensors, which evaluation loads by default): each must load with strict keys and shapes, and hold
finite values only (a NaN or inf is an error naming the file and tensors); ``--weights`` restricts the check to one.

When the folder also holds `vectors.safetensors` in the parity layout (see tests/data/rdt_parity/README.md:
inputs recorded from the original RDT code with its outputs), recompute the three outputs in float32 and print
their relative L2 errors: the network's forward prediction, the training loss (recorded noise and timesteps) and
the 5-step DPM-Solver++ sample (recorded initial noise). Exit status 1 when any error exceeds the tolerance,
2 when the checkpoint cannot be loaded, 0 otherwise.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from rdt.errors import UserError

if TYPE_CHECKING:  # torch is imported on use so that `--help` stays fast
    import torch

VECTORS_FILE = "vectors.safetensors"
DEFAULT_TOLERANCE = 1e-4
PARITY_KEYS = (
    "lang_tokens",
    "lang_attn_mask",
    "img_tokens",
    "state_tokens",
    "action_mask",
    "action_gt",
    "ctrl_freqs",
    "forward_timesteps",
    "forward_noisy_action",
    "forward_pred",
    "loss_noise",
    "loss_timesteps",
    "loss",
    "sample_noise",
    "sample_actions",
)


def check_finite(state_dict: dict[str, torch.Tensor], source: str) -> None:
    """UserError naming ``source`` and (up to 5 of) the tensors holding NaN or inf values."""
    import torch

    bad = [k for k, v in state_dict.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        more = f" (+{len(bad) - 5} more)" if len(bad) > 5 else ""
        raise UserError(
            f"{source}: non-finite values (NaN or inf) in {len(bad)} tensor(s): "
            f"{', '.join(bad[:5])}{more}; the weights are broken (a diverged run?)"
        )


def weight_kinds(folder: Path) -> list[str]:
    """The weights present in a checkpoint folder: ``model`` and/or ``ema`` (``model`` when none is, so that
    loading reports what is missing)."""
    from rdt.model.checkpoint import BIN_FILE, EMA_FILE, SAFETENSORS_FILE

    kinds = []
    if (folder / SAFETENSORS_FILE).is_file() or (folder / BIN_FILE).is_file():
        kinds.append("model")
    if (folder / EMA_FILE).is_file():
        kinds.append("ema")
    return kinds or ["model"]


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """||got - want||_2 / ||want||_2 in float64."""
    got, want = got.double().reshape(-1), want.double().reshape(-1)
    return float((got - want).norm() / want.norm().clamp_min(1e-300))


def load_vectors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        vectors = load_file(str(path))
    except Exception as e:  # noqa: BLE001 - corrupt file: name it
        raise UserError(f"{path}: cannot read parity vectors ({type(e).__name__}: {e})") from None
    missing = [k for k in PARITY_KEYS if k not in vectors]
    if missing:
        raise UserError(f"{path}: missing parity tensors {missing} (layout: see tests/data/rdt_parity/README.md)")
    return vectors


def parity_errors(runner, vectors: dict[str, torch.Tensor]) -> dict[str, float]:
    """Relative L2 errors of forward prediction, training loss and sampled actions against recorded vectors."""
    import torch

    with torch.no_grad():
        return _parity_errors(runner, {k: t.to(next(runner.parameters()).device) for k, t in vectors.items()})


def _parity_errors(runner, v: dict[str, torch.Tensor]) -> dict[str, float]:
    cond = (v["lang_tokens"], v["lang_attn_mask"].bool(), v["img_tokens"])
    pred = runner.denoise(
        *cond, v["state_tokens"], v["forward_noisy_action"], v["action_mask"], v["ctrl_freqs"], v["forward_timesteps"]
    )
    loss = runner.compute_loss(
        *cond,
        v["state_tokens"],
        v["action_gt"],
        v["action_mask"],
        v["ctrl_freqs"],
        noise=v["loss_noise"],
        timesteps=v["loss_timesteps"],
    )
    actions = runner.predict_action(
        *cond, v["state_tokens"], v["action_mask"], v["ctrl_freqs"], noise=v["sample_noise"]
    )
    return {
        "forward": relative_error(pred, v["forward_pred"]),
        "loss": relative_error(loss.reshape(1), v["loss"]),
        "sample": relative_error(actions, v["sample_actions"]),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "folder",
        metavar="DIR",
        help="checkpoint folder (config.json + model.safetensors or pytorch_model.bin), or a hub id "
        "present in the local Hugging Face cache",
    )
    parser.add_argument(
        "--weights",
        choices=("all", "model", "ema"),
        default="all",
        help="which weights to check: every weights file in the folder (all), or only "
        "model.safetensors/pytorch_model.bin (model) or ema/model.safetensors (ema); the parity "
        "check uses the model weights unless ema is chosen (default: %(default)s)",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help="largest accepted relative L2 error of the parity checks (default: %(default)g)",
    )


def main(args: argparse.Namespace) -> int:
    import torch

    from rdt.model.checkpoint import _weights_file, load_runner, resolve_folder

    resolved = resolve_folder(args.folder)
    if args.weights != "all":
        kinds = [args.weights]
    else:
        kinds = weight_kinds(resolved) if resolved.is_dir() else ["model"]
    loaded = {}
    for kind in kinds:
        runner, pipeline = load_runner(args.folder, weights=kind, dtype=torch.float32)
        source = str(_weights_file(resolved, kind) if resolved.is_dir() else resolved)
        check_finite(runner.state_dict(), source)
        loaded[kind] = runner
    runner = loaded[kinds[0]]
    c = runner.config
    print(f"checkpoint      {args.folder} (weights: {', '.join(kinds)}; all keys and shapes match, all values finite)")
    print(f"parameters      {runner.num_parameters():,}")
    print(f"transformer     hidden {c.hidden_size}, depth {c.depth}, heads {c.num_heads}, rms_norm {c.rms_norm}")
    print(
        f"conditions      language {c.lang_token_dim}-dim x <= {c.max_lang_cond_len} tokens, "
        f"image {c.img_token_dim}-dim x {c.img_cond_len} tokens {c.img_pos_embed_config}"
    )
    print(
        f"actions         {c.pred_horizon} x {c.action_dim}; scheduler {c.noise_scheduler['beta_schedule']}, "
        f"predicts {c.noise_scheduler['prediction_type']}, {c.num_inference_timesteps} sampling steps"
    )
    if pipeline:
        print(f"pipeline        {', '.join(f'{k}={pipeline[k]}' for k in pipeline if k != 'dataset_stat')}")
    folder = resolved if resolved.is_dir() else resolved.parent
    vectors_path = folder / VECTORS_FILE
    if not vectors_path.is_file():
        print(f"parity          no {VECTORS_FILE} in {folder}; loading check only")
        return 0
    errors = parity_errors(runner, load_vectors(vectors_path))
    failed = [k for k, e in errors.items() if not e <= args.tolerance]
    for name, err in errors.items():
        print(f"parity {name:<8} relative L2 error {err:.3e} ({'ok' if name not in failed else 'FAIL'})")
    if failed:
        print(f"parity FAILED: {', '.join(failed)} above tolerance {args.tolerance:g} (vectors: {vectors_path})")
        return 1
    print(f"parity ok: all errors <= {args.tolerance:g}")
    return 0
