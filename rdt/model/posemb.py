"""Sin-cos tables that initialise RDT's three learned positional embeddings, and the timestep sinusoid.

Positional tables are MAE-style ``[sin(pos*w), cos(pos*w)]`` (sin half first), ``w = 1/10000**(i/(D/2))``.
The timestep / control-frequency sinusoid (GLIDE) is ``[cos, sin]`` (cos half first). The tables only set the
initial values: the parameters are trained and a checkpoint's values are loaded as they are.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch


def sincos_1d(dim: int, pos: np.ndarray) -> np.ndarray:
    """(M,) positions -> (M, dim) ``[sin(pos*w), cos(pos*w)]``, computed in float64."""
    if dim % 2:
        raise ValueError(f"sin-cos embedding needs an even dim, got {dim}")
    omega = np.arange(dim // 2, dtype=np.float64) / (dim / 2.0)
    omega = 1.0 / 10000**omega  # (dim/2,)
    out = np.einsum("m,d->md", np.asarray(pos, dtype=np.float64).reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_nd(dim: int, grid_sizes: Sequence[int]) -> np.ndarray:
    """(*grid_sizes, dim): the dim is split equally over the axes with size > 1, in axis order; each part holds
    the 1-D sin-cos of the index along that axis. Axes of size 1 carry no information."""
    axes = [i for i, s in enumerate(grid_sizes) if s > 1]
    emb = np.zeros((*grid_sizes, dim), dtype=np.float64)
    if not axes:
        return emb
    part = dim // len(axes)
    start = 0
    for i in axes:
        shape = [1] * len(grid_sizes) + [part]
        shape[i] = -1
        emb[..., start : start + part] += sincos_1d(part, np.arange(grid_sizes[i])).reshape(shape)
        start += part
    return emb


def multimodal_pos_embed(
    dim: int, modalities: Sequence[tuple[str, int | tuple[int, ...]]], embed_modality: bool = True
) -> np.ndarray:
    """(total tokens, dim) table for consecutive modalities ``[(name, length or grid)]``.

    With ``embed_modality`` dims ``[0, dim/2)`` hold the sin-cos of the modality index and ``[dim/2, dim)`` the
    position inside the modality; otherwise all of ``dim`` is positional. A negative length means that many
    tokens at position 0; a grid (tuple) is embedded with ``sincos_nd`` over its positive axes, negative axes
    repeat the same row (e.g. ``(2, 3, -729)``: history x camera embedded, the 729 patches share it).
    """
    pos_dim = dim // 2 if embed_modality else dim
    rows = []
    for idx, (_, length) in enumerate(modalities):
        if isinstance(length, (tuple, list)):
            full = tuple(abs(s) for s in length)
            embedded = tuple(s if s > 0 else 1 for s in length)
            table = sincos_nd(pos_dim, embedded)  # (*embedded, pos_dim)
            table = np.broadcast_to(table, (*full, pos_dim)).reshape(-1, pos_dim)
        elif length > 0:
            table = sincos_1d(pos_dim, np.arange(length))
        else:
            table = sincos_1d(pos_dim, np.zeros(-length))
        if embed_modality:
            mod = np.repeat(sincos_1d(pos_dim, np.array([idx])), table.shape[0], axis=0)
            table = np.concatenate([mod, table], axis=1)
        rows.append(table)
    return np.concatenate(rows, axis=0)


def timestep_sinusoid(t: torch.Tensor, dim: int = 256, max_period: float = 10000.0) -> torch.Tensor:
    """(N,) timesteps (or control frequencies) -> (N, dim) float32 (dim even) ``[cos(t*f), sin(t*f)]``,
    ``f = exp(-ln(max_period) * i / (dim/2))``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.reshape(-1, 1).float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
