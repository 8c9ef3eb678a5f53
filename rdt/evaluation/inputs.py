"""What the policy is given at each re-plan: the interface the evaluator calls (:class:`ChunkPolicy`; the real one
is rdt.evaluation.policy.Policy), the batched inputs built from the simulators' observations (:func:`policy_inputs`),
the sampling-noise seed of each episode's call (:func:`noise_seed`), and the check of the observed states against
the training state range (:class:`StateRangeCheck`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from rdt import statevec
from rdt.libero import mapping
from rdt.libero.workers import PRESENT_SLOTS, Job, Observation
from rdt.model.config import IMG_HISTORY
from rdt.utils.hashing import settings_key

#: a state value is "far outside" the training range when it lies beyond min/max by more than this fraction of
#: the range (or than STATE_FAR_ABS for dimensions that were constant in training).
STATE_FAR_FRACTION = 0.5
STATE_FAR_ABS = 0.05

log = logging.getLogger(__name__)


class ChunkPolicy(Protocol):
    """What the evaluator calls (``rdt.evaluation.policy.Policy`` or a test policy): one call per re-plan.

    images (B, 2, 3, S, S, 3) uint8 (history t-1, t; cameras exterior, right wrist, left wrist) with valid (B, 2, 3)
    bool; states (B, 128); state_mask (B, 128); noise_seeds: one sampling-noise seed per row (:func:`noise_seed`)
    -> unified actions (B, chunk, 128)."""

    def act(
        self,
        lang_embeds: list,
        images: np.ndarray,
        image_mask: np.ndarray,
        states: np.ndarray,
        state_mask: np.ndarray,
        *,
        noise_seeds: Sequence[int],
    ) -> np.ndarray: ...


def policy_inputs(
    observations: Sequence[Observation], mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Observations -> (images (B,2,3,S,S,3) uint8, image_mask (B,2,3) bool, states (B,128) f32,
    state_mask (B,128) f32). History index 0 = t-1, 1 = t; the left-wrist slot is absent. ``mask``: the
    availability mask the checkpoint was trained with (default mapping.MASK); state slots outside it are 0."""
    b = len(observations)
    size = observations[0].images.shape[1]
    images = np.zeros((b, IMG_HISTORY, len(mapping.CAMERA_SLOTS), size, size, 3), dtype=np.uint8)
    valid = np.zeros((b, IMG_HISTORY, len(mapping.CAMERA_SLOTS)), dtype=bool)
    slots = [mapping.CAMERA_SLOTS.index(s) for s in PRESENT_SLOTS]
    for row, obs in enumerate(observations):
        for k, j in enumerate(slots):
            images[row, 1, j] = obs.images[k]
            valid[row, 1, j] = True
            if obs.prev_images is not None:
                images[row, 0, j] = obs.prev_images[k]
                valid[row, 0, j] = True
    mask = mapping.MASK if mask is None else np.asarray(mask, dtype=np.float32)
    states = np.stack([obs.state for obs in observations]).astype(np.float32) * mask
    state_mask = np.broadcast_to(mask, states.shape).astype(np.float32)
    return images, valid, states, state_mask


def noise_seed(seed: int, job: Job, call: int) -> int:
    """The sampling-noise seed of an episode's ``call``-th policy call (0, 1, ...): a function of the evaluation
    seed, the task, the init state and the call alone, so an episode samples the same noise whatever it is batched
    with, on whichever worker, at whichever horizon run first."""
    return int(settings_key([seed, job.task.suite, job.task.name, job.init_state, call]), 16) & (2**63 - 1)


class StateRangeCheck:
    """Compares observed unified states with the training state range (dataset_stat.json ``state_min/max``) on
    the state slots LIBERO fills; warns once when a value lies far outside it (a distribution shift)."""

    def __init__(self, stats: dict):
        idx = statevec.indices(mapping.STATE_SLOTS)
        self.names = list(mapping.STATE_SLOTS)
        self.idx = np.asarray(idx)
        lo = np.asarray(stats["state_min"], dtype=np.float64)[self.idx]
        hi = np.asarray(stats["state_max"], dtype=np.float64)[self.idx]
        margin = np.maximum(STATE_FAR_FRACTION * (hi - lo), STATE_FAR_ABS)
        self.lo, self.hi = lo - margin, hi + margin
        self.train_min, self.train_max = lo, hi
        self.checked = 0
        self.far = 0
        self.far_per_slot = np.zeros(len(idx), dtype=np.int64)
        self.warned = False

    def update(self, states: np.ndarray) -> None:
        v = np.asarray(states, dtype=np.float64)[:, self.idx]  # (B, S)
        outside = (v < self.lo) | (v > self.hi)
        self.checked += len(v)
        self.far += int(outside.any(axis=1).sum())
        self.far_per_slot += outside.sum(axis=0)
        if outside.any() and not self.warned:
            self.warned = True
            b, s = np.argwhere(outside)[0]
            log.warning(
                "observed state %s = %.4g is far outside the training range [%.4g, %.4g] "
                "(a distribution shift between the training data and the simulator; warned once, counted "
                "in summary.json state_range)",
                self.names[s],
                v[b, s],
                self.train_min[s],
                self.train_max[s],
            )

    def summary(self) -> dict:
        return {
            "states_checked": self.checked,
            "states_far_outside": self.far,
            "far_fraction": STATE_FAR_FRACTION,
            "far_abs": STATE_FAR_ABS,
            "far_per_slot": {n: int(c) for n, c in zip(self.names, self.far_per_slot) if c},
        }
