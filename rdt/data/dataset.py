"""Training samples for RDT from a converted training HDF5 (docs/formats.md §2), built as RDT builds them.

One sample per (episode, step t), uniform over all steps of all episodes (``len`` = total steps):
- ``state`` (1,128) float32: the unified state at t, plus Gaussian noise at ``state_noise_snr`` dB
  (sigma = the episode's per-dim state std / sqrt(10^(snr/10)), RDT ``train/dataset.py``);
- ``actions`` (chunk_size,128) float32: actions t .. t+chunk_size-1, padded by repeating the episode's last action
  (``chunk_size``: the model's ``pred_horizon``, 64 for every preset);
- ``state_mask`` (128,) float32: the availability mask (1 = slot used);
- ``images``: 6 frames in RDT order [ext_{t-1}, right_{t-1}, left_{t-1}, ext_t, right_t, left_t]; the left-wrist
  slot (absent in LIBERO) and the t-1 frames at t = 0 are invalid. With ``image_transform=None`` a uint8 tensor
  (6,H,W,3) with invalid frames filled with the background colour (127,127,127); otherwise
  ``image_transform(list of 6 (H,W,3) uint8 arrays or None for invalid)`` (e.g. the vision encoder's
  ``preprocess``), run in the loader workers;
- with ``frame_ids=True`` (precomputed image features, rdt.data.features) no frame is read: ``images`` is replaced
  by ``frame_ids`` (6,) int64, the global ids :meth:`LiberoDataset.frame_id` of the 6 frames (-1 = invalid);
- ``image_valid`` (6,) bool; ``instruction`` (str); ``lang`` (L,D) float32 embedding when a language table is
  given; ``ctrl_freq`` (int, Hz); ``episode``, ``step`` (int).

Condition masking (RDT §6.4, every draw independent with probability ``cond_mask_prob``): ctrl_freq -> 0; state
-> the dataset ``state_mean``; state_mask -> zeros; each of the 6 images -> invalid; instruction -> "" with the
embedding of "" (RDT's ``empty_lang_embed``; the language table must hold the empty instruction). Image
augmentation (rdt.data.augment) is applied to the valid images after masking.

The HDF5 file is opened lazily once per process (h5py handles are not fork-safe) and a sample reads only its
frames; states and actions of the used slots are cached in memory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from rdt import statevec
from rdt.data import augment, episode_names, open_training_file
from rdt.data.stats import normalize_states
from rdt.errors import UserError
from rdt.lang import pad_language
from rdt.model.config import IMG_HISTORY, PRED_HORIZON

BACKGROUND = (127, 127, 127)  # int(255 * 0.5): SigLIP's mean colour, RDT's background image
TRANSITION_WINDOW = 8  # steps on either side of a gripper change that count as "near" it
_GRIPPER = statevec.STATE_VEC_IDX["right_gripper_open"]


class LanguageLookup(Protocol):
    """What the dataset needs of rdt.lang.LanguageTable."""

    def __contains__(self, instruction: str) -> bool: ...

    def get(self, instruction: str) -> torch.Tensor: ...


class LiberoDataset(Dataset):
    """RDT training samples from a training HDF5 (see the module docstring for the sample's fields).

    ``episodes``: indices of the episodes to use (e.g. from :func:`split_episodes`); all when None.
    ``stats``: the dataset entry of ``dataset_stat.json`` (rdt.data.stats.load_stats); required when
    ``cond_mask_prob > 0`` (the masked state is its ``state_mean``). ``chunk_size``: the trained model's
    ``RDTConfig.pred_horizon`` (default: RDT's, :data:`rdt.model.config.PRED_HORIZON`). The defaults are RDT's
    fine-tuning recipe.
    """

    def __init__(
        self,
        path: str | Path,
        lang: LanguageLookup | None = None,
        stats: dict | None = None,
        *,
        episodes: list[int] | None = None,
        cond_mask_prob: float = 0.1,
        state_noise_snr: float | None = 40.0,
        image_aug: bool = True,
        image_transform: Callable[[list[np.ndarray | None]], torch.Tensor] | None = None,
        chunk_size: int = PRED_HORIZON,
        frame_ids: bool = False,
        state_norm: str = "none",
    ) -> None:
        self.path = Path(path)
        self.lang, self.image_transform = lang, image_transform
        if frame_ids and image_aug:
            raise UserError(
                "precomputed image features (frame ids instead of frames) need image_aug off: an "
                "augmented frame differs at every draw, so its features cannot be computed once"
            )
        self.frame_ids = frame_ids
        self.cond_mask_prob, self.state_noise_snr, self.image_aug = cond_mask_prob, state_noise_snr, image_aug
        self.chunk_size = chunk_size
        if not 0.0 <= cond_mask_prob <= 1.0:
            raise UserError(f"cond_mask_prob = {cond_mask_prob}; expected a probability in [0, 1]")
        if cond_mask_prob > 0 and stats is None:
            raise UserError("condition masking (cond_mask_prob > 0) needs the dataset statistics (state_mean)")
        if state_norm != "none" and stats is None:
            raise UserError(f"state_norm {state_norm!r} needs the dataset statistics (state_mean, state_std)")
        self.stats, self.state_norm = stats, state_norm
        self.state_mean = None if stats is None else np.asarray(stats["state_mean"], dtype=np.float32)
        with open_training_file(self.path) as f:
            self._read_metadata(f, episodes)
        if lang is not None:
            if cond_mask_prob > 0 and "" not in lang:
                raise UserError(
                    f"{getattr(lang, 'path', 'the language table')}: no embedding of the empty "
                    "instruction '', which condition masking uses (RDT's empty_lang_embed); "
                    "encode '' together with the instructions"
                )
            needed = sorted(set(self.instructions) | ({""} if cond_mask_prob > 0 else set()))
            self._lang_cache = {s: lang.get(s).to(torch.float32) for s in needed}  # UserError if one is missing
        self._h5: h5py.File | None = None
        self._pid = -1
        self._frames: dict[tuple[int, str], h5py.Dataset] = {}

    # ---------------------------------------------------------------------------------------- metadata

    def _read_metadata(self, f: h5py.File, episodes: list[int] | None) -> None:
        names = episode_names(f)
        chosen = list(range(len(names))) if episodes is None else list(episodes)
        bad = [i for i in chosen if not 0 <= i < len(names)]
        if bad or not chosen:
            raise UserError(f"{self.path}: episode indices {bad[:5] or chosen} out of range 0..{len(names) - 1}")
        self.mask = np.asarray(f.attrs["mask"], dtype=np.float32)  # (128,)
        self.used = np.flatnonzero(self.mask > 0)  # cached columns
        self.ctrl_freq = int(f.attrs["control_frequency"])
        self.image_shape = (int(f.attrs["image_size"]),) * 2 + (3,)  # (S,S,3)
        cameras = json.loads(f.attrs["cameras"])
        self.slots = [slot for slot in cameras]  # RDT camera order
        self.present = [cameras[slot] is not None for slot in self.slots]
        self.episode_ids = chosen
        self.episode_names = [names[i] for i in chosen]
        states, actions, lengths, self.tasks, self.instructions = [], [], [], [], []
        for name in self.episode_names:
            grp = f["episodes"][name]
            s, a = grp["state"][()], grp["action"][()]
            if s.shape != a.shape or s.ndim != 2 or s.shape[1] != statevec.STATE_DIM or s.shape[0] < 1:
                raise UserError(
                    f"{self.path}: episodes/{name}: state {s.shape} / action {a.shape}, expected "
                    f"(T,{statevec.STATE_DIM}) each with T >= 1"
                )
            states.append(s[:, self.used])
            actions.append(a[:, self.used])
            lengths.append(s.shape[0])
            self.tasks.append(str(grp.attrs["task"]))
            self.instructions.append(str(grp.attrs["instruction"]))
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])  # (E+1,)
        self._states = np.concatenate(states).astype(np.float32)  # (N, used)
        self._actions = np.concatenate(actions).astype(np.float32)
        self._state_std = np.stack([s.std(0) for s in states]).astype(np.float32)  # (E, used)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, index: int) -> tuple[int, int]:
        """Sample index -> (position in ``episode_ids``, step)."""
        if not 0 <= index < len(self):
            raise IndexError(f"sample index {index} out of range 0..{len(self) - 1}")
        e = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return e, int(index - self.offsets[e])

    def frame_id(self, e: int, slot: int, t: int) -> int:
        """Global id of the frame of camera slot ``slot`` at step ``t`` of episode position ``e``:
        (sample index of (e, t)) x number of slots + slot, so ids run over 0 .. len(self) x slots - 1."""
        return (int(self.offsets[e]) + t) * len(self.slots) + slot

    def read_episode_frames(self, e: int, slot: int) -> np.ndarray:
        """All frames (T, H, W, 3) uint8 of camera slot ``slot`` of episode position ``e``."""
        return self._read_frames(e, self.slots[slot], 0, int(self.lengths[e]))

    def gripper_actions(self, e: int) -> np.ndarray:
        """(T,) gripper command of episode position ``e`` (1 = open, 0 = closed)."""
        col = int(np.flatnonzero(self.used == _GRIPPER)[0])
        return self._actions[self.offsets[e] : self.offsets[e + 1], col]

    # ---------------------------------------------------------------------------------------- reading

    def _file(self) -> h5py.File:
        if self._h5 is None or self._pid != os.getpid():  # first use in this process (e.g. a new worker)
            self._h5 = h5py.File(self.path, "r")
            self._pid = os.getpid()
            self._frames = {}
        return self._h5

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_h5=None, _pid=-1, _frames={})
        return state

    def _read_frames(self, e: int, slot: str, lo: int, hi: int) -> np.ndarray:
        key = (e, slot)
        ds = self._frames.get(key)
        if ds is None:
            ds = self._frames[key] = self._file()["episodes"][self.episode_names[e]]["images"][slot]
        return ds[lo:hi]

    def _unified(self, values: np.ndarray) -> np.ndarray:
        out = np.zeros(values.shape[:-1] + (statevec.STATE_DIM,), dtype=np.float32)
        out[..., self.used] = values
        return out

    def _noisy_state(self, e: int, t: int, rng: np.random.Generator) -> np.ndarray:
        """(1,128) unified state of step ``t`` of episode position ``e``, with the configured SNR noise."""
        state = self._states[int(self.offsets[e]) + t].copy()
        if self.state_noise_snr is not None:
            state += (
                rng.normal(0.0, 1.0, state.shape).astype(np.float32)
                * self._state_std[e]
                / np.sqrt(10.0 ** (self.state_noise_snr / 10.0))
            )
        return self._unified(state)[None]

    def _action_chunk(self, e: int, t: int) -> np.ndarray:
        """(chunk,128) unified actions from step ``t`` on; past the episode's end the last action repeats."""
        start, length = int(self.offsets[e]), int(self.lengths[e])
        steps = np.minimum(np.arange(t, t + self.chunk_size), length - 1)
        return self._unified(self._actions[start + steps])

    def _history_frames(self, e: int, t: int) -> list[tuple[int, np.ndarray | None] | None]:
        """frames[h * slots + j] = (step, frame) of history h (0 = t-1, 1 = t) of camera slot j, None = invalid
        (an absent slot, or t-1 at step 0); the frame itself is None when ``frame_ids`` (ids, not pixels)."""
        frames: list[tuple[int, np.ndarray | None] | None] = [None] * (IMG_HISTORY * len(self.slots))
        lo = max(t - 1, 0)
        for j, slot in enumerate(self.slots):
            if not self.present[j]:
                continue
            read = None if self.frame_ids else self._read_frames(e, slot, lo, t + 1)  # (1 or 2, H, W, 3)
            for k, step in enumerate(range(t, lo - 1, -1)):  # t, then t-1
                frames[(IMG_HISTORY - 1 - k) * len(self.slots) + j] = (step, None if read is None else read[step - lo])
        return frames

    def __getitem__(self, index: int) -> dict[str, Any]:
        e, t = self.locate(int(index))
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))  # follows torch's worker seeding

        def masked() -> bool:  # one independent condition-masking draw
            return self.cond_mask_prob > 0 and rng.random() < self.cond_mask_prob

        # the random draws come in this order (state noise, masks, per-frame mask or augmentation, instruction)
        state = self._noisy_state(e, t, rng)  # (1,128)
        if masked():
            state = self.state_mean[None].copy()
        if self.state_norm != "none":  # the masked state becomes 0, the normalised mean
            state = normalize_states(state, self.stats, self.state_norm) * self.mask
        state_mask = self.mask.copy() if not masked() else np.zeros_like(self.mask)
        actions = self._action_chunk(e, t)  # (64,128)
        ctrl_freq = 0 if masked() else self.ctrl_freq

        frames = self._history_frames(e, t)
        for i in range(len(frames)):
            if frames[i] is not None and masked():
                frames[i] = None
            elif frames[i] is not None and self.image_aug:
                frames[i] = (frames[i][0], augment.augment(frames[i][1], rng))
        valid = torch.tensor([f is not None for f in frames])

        instruction = self.instructions[e]
        if masked():
            instruction = ""
        sample = {
            "state": torch.from_numpy(state),
            "actions": torch.from_numpy(actions),
            "state_mask": torch.from_numpy(state_mask),
            "image_valid": valid,
            "instruction": instruction,
            "ctrl_freq": ctrl_freq,
            "episode": self.episode_ids[e],
            "step": t,
        }
        if self.frame_ids:
            sample["frame_ids"] = torch.tensor(
                [-1 if f is None else self.frame_id(e, i % len(self.slots), f[0]) for i, f in enumerate(frames)],
                dtype=torch.long,
            )
        else:
            sample["images"] = self._images([None if f is None else f[1] for f in frames])
        if self.lang is not None:
            sample["lang"] = self._lang_cache[instruction]
        return sample

    def _images(self, frames: list[np.ndarray | None]) -> torch.Tensor:
        if self.image_transform is not None:
            return self.image_transform(frames)
        out = np.empty((len(frames),) + self.image_shape, dtype=np.uint8)
        for i, f in enumerate(frames):
            out[i] = BACKGROUND if f is None else f
        return torch.from_numpy(out)  # (6,H,W,3)


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples into a batch; language embeddings are zero-padded to the longest, with ``lang_mask``
    (B,L) bool (True = real token)."""
    batch: dict[str, Any] = {
        k: torch.stack([s[k] for s in samples])
        for k in ("state", "actions", "state_mask", "images", "frame_ids", "image_valid")
        if k in samples[0]
    }
    for k in ("ctrl_freq", "episode", "step"):
        batch[k] = torch.tensor([s[k] for s in samples], dtype=torch.long)
    batch["instruction"] = [s["instruction"] for s in samples]
    if "lang" in samples[0]:
        batch["lang"], batch["lang_mask"] = pad_language([s["lang"] for s in samples])
    return batch


# -------------------------------------------------------------------------------------------- sampling


def transition_weights(dataset: LiberoDataset, factor: float, window: int = TRANSITION_WINDOW) -> np.ndarray:
    """Per-sample weights (len(dataset),): ``factor`` for steps within ``window`` steps of a gripper open/close
    transition (the gripper command changes by more than 0.5 between consecutive steps), 1 elsewhere."""
    if factor < 1.0:
        raise UserError(f"transition oversampling factor = {factor}; expected >= 1")
    weights = np.ones(len(dataset), dtype=np.float64)
    for e in range(len(dataset.lengths)):
        g = dataset.gripper_actions(e)
        changes = np.flatnonzero(np.abs(np.diff(g)) > 0.5) + 1  # first step after each change
        near = np.zeros(len(g), dtype=bool)
        for c in changes:
            near[max(c - window, 0) : c + window + 1] = True
        weights[dataset.offsets[e] : dataset.offsets[e + 1]][near] = factor
    return weights


def split_episodes(path: str | Path, heldout_per_task: int) -> tuple[list[int], list[int]]:
    """Deterministic split by episode: the last ``heldout_per_task`` episodes of each task (in file order) are
    held out, always keeping at least one episode of a task for training. Returns (train, heldout) indices."""
    if heldout_per_task < 0:
        raise UserError(f"heldout episodes per task = {heldout_per_task}; expected >= 0")
    with open_training_file(path) as f:
        names = episode_names(f)
        by_task: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            by_task.setdefault(str(f["episodes"][name].attrs["task"]), []).append(i)
    heldout = sorted(i for eps in by_task.values() for i in eps[len(eps) - min(heldout_per_task, len(eps) - 1) :])
    held = set(heldout)
    return [i for i in range(len(names)) if i not in held], heldout
