"""Deterministic sample addressing: every training sample has a global position p = 0, 1, 2, ... and all of its
random draws (which step, condition masking, state noise, augmentation, diffusion noise and timestep) are seeded by
(seed, p). Optimizer step n consumes positions n x E ... (n+1) x E - 1 (E = effective batch) over all processes, so
the trajectory depends neither on the process count nor on the data-loading workers, and a resumed run continues
the same stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


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

    def __init__(
        self,
        dataset: Dataset,
        seed: int,
        num_train_timesteps: int,
        action_shape: tuple[int, int],
        weights: np.ndarray | None = None,
    ):
        self.dataset, self.seed = dataset, int(seed)
        self.num_train_timesteps, self.action_shape = int(num_train_timesteps), tuple(action_shape)
        w = np.ones(len(dataset)) if weights is None else np.asarray(weights, dtype=np.float64)
        self.cumulative = np.cumsum(w)

    def index_of(self, position: int) -> int:
        s_draw, _, _ = position_seeds(self.seed, position)
        u = np.random.default_rng(s_draw).random() * self.cumulative[-1]
        return int(min(np.searchsorted(self.cumulative, u, side="right"), len(self.cumulative) - 1))

    def __len__(self) -> int:  # positions are unbounded; the sampler decides which are read
        return 2**62

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

    def batch(self, positions: range | list[int]) -> dict[str, Any]:
        """The collated samples at ``positions`` (read in this process)."""
        return collate_positioned([self[p] for p in positions])


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
