"""Dataset statistics of a training HDF5 in RDT's ``dataset_stat.json`` form (docs/formats.md §3).

State statistics use RDT's formulas (``data/compute_dataset_stat_hdf5.py``): mean over all steps; std over the
entries with |x| > 1e-8, ``sqrt(max(sum z^2 / nz_cnt - (sum z / cnt)^2 * cnt / nz_cnt, 0))`` with z = x where
|x| > 1e-8 else 0 and nz_cnt clipped to >= 1; elementwise min and max. Action statistics are the plain mean,
population std, min, max and the 1% / 99% quantiles over all steps. Episodes are read one at a time (state and
action only, never images).
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np

from rdt import statevec
from rdt.data import episode_names, open_training_file
from rdt.errors import UserError
from rdt.utils.atomic import write_json
from rdt.utils.files import read_json
from rdt.utils.progress import Progress

EPS = 1e-8
DEFAULT_NAME = "libero"
#: train.state_norm: the model sees the unified state as it is (RDT-1B: physical units), or z-scored per slot with the
#: training data's state_mean/state_std (std floored at STATE_STD_FLOOR so that a slot constant in training does not
#: blow up at evaluation)
STATE_NORMS = ("none", "zscore")
STATE_STD_FLOOR = 1e-2


def normalize_states(states: np.ndarray, stats: dict, norm: str) -> np.ndarray:
    """(..., 128) unified states as the model sees them under ``norm`` (:data:`STATE_NORMS`): unchanged for
    ``none``; for ``zscore`` (x - state_mean) / max(state_std, STATE_STD_FLOOR). The one place training (the
    dataset) and evaluation (the policy) normalise, so both see the same numbers; callers mask unused slots."""
    if norm == "none":
        return states
    if norm != "zscore":
        raise ValueError(f"state normalisation {norm!r}; expected one of {STATE_NORMS}")
    mean = np.asarray(stats["state_mean"], dtype=np.float32)
    std = np.maximum(np.asarray(stats["state_std"], dtype=np.float32), STATE_STD_FLOOR)
    return ((np.asarray(states, dtype=np.float32) - mean) / std).astype(np.float32)


class _StateAccumulator:
    """Streaming sums for RDT's state statistics, in float64."""

    def __init__(self) -> None:
        self.cnt = 0
        self.sum = np.zeros(statevec.STATE_DIM)
        self.z_sum = np.zeros(statevec.STATE_DIM)
        self.z_sum_sq = np.zeros(statevec.STATE_DIM)
        self.nz_cnt = np.zeros(statevec.STATE_DIM)
        self.min = np.full(statevec.STATE_DIM, np.inf)
        self.max = np.full(statevec.STATE_DIM, -np.inf)

    def add(self, x: np.ndarray) -> None:  # x (T,128)
        x = x.astype(np.float64)
        nz = np.abs(x) > EPS
        z = np.where(nz, x, 0.0)
        self.cnt += x.shape[0]
        self.sum += x.sum(0)
        self.z_sum += z.sum(0)
        self.z_sum_sq += (z * z).sum(0)
        self.nz_cnt += nz.sum(0)
        self.min = np.minimum(self.min, x.min(0))
        self.max = np.maximum(self.max, x.max(0))

    def result(self) -> dict[str, list[float]]:
        nz_cnt = np.maximum(self.nz_cnt, 1)
        var = self.z_sum_sq / nz_cnt - (self.z_sum / self.cnt) ** 2 * self.cnt / nz_cnt
        return {
            "state_mean": (self.sum / self.cnt).tolist(),
            "state_std": np.sqrt(np.maximum(var, 0)).tolist(),
            "state_min": self.min.tolist(),
            "state_max": self.max.tolist(),
        }


def action_statistics(columns: np.ndarray, used: np.ndarray, constant: np.ndarray) -> dict[str, list[float]]:
    """Action statistics over 128 dims from the values of the used dims (N, len(used)); the other dims hold the
    constant value ``constant`` (128,) at every step."""
    out = {k: constant.astype(np.float64).copy() for k in ("mean", "min", "max", "q01", "q99")}
    out["std"] = np.zeros(statevec.STATE_DIM)
    v = columns.astype(np.float64)
    out["mean"][used] = v.mean(0)
    out["std"][used] = v.std(0)
    out["min"][used] = v.min(0)
    out["max"][used] = v.max(0)
    out["q01"][used], out["q99"][used] = np.quantile(v, [0.01, 0.99], axis=0)
    return {f"action_{k}": out[k].tolist() for k in ("mean", "std", "min", "max", "q01", "q99")}


def compute_stats(data_path: str | Path, name: str = DEFAULT_NAME) -> dict:
    """The ``{name: {...}}`` statistics of a training HDF5, streaming over its episodes."""
    with open_training_file(data_path) as f:
        names = episode_names(f)
        if not names:
            raise UserError(f"{data_path}: group 'episodes' is empty; nothing to compute statistics over")
        used = np.flatnonzero(np.asarray(f.attrs["mask"]) > 0)  # action values outside the mask are constant 0
        state_acc = _StateAccumulator()
        action_cols, episodes, steps = [], Counter(), Counter()
        in_mask = np.zeros(statevec.STATE_DIM, dtype=bool)
        in_mask[used] = True
        with Progress(len(names), "stats", unit="episode", every=10.0) as progress:
            for ep in names:
                grp = f["episodes"][ep]
                state, action = grp["state"][()], grp["action"][()]
                if np.any(action[:, ~in_mask] != 0):
                    raise UserError(
                        f"{data_path}: episodes/{ep}/action has non-zero values outside the "
                        f"availability mask (root attribute 'mask')"
                    )
                state_acc.add(state)
                action_cols.append(action[:, used])
                task = str(grp.attrs["task"])
                episodes[task] += 1
                steps[task] += state.shape[0]
                progress.update(1)
    entry = {
        "dataset_name": name,
        **state_acc.result(),
        **action_statistics(np.concatenate(action_cols), used, np.zeros(statevec.STATE_DIM)),
        "num_episodes": len(names),
        "num_steps": int(sum(steps.values())),
        "episodes_per_task": dict(sorted(episodes.items())),
        "steps_per_task": dict(sorted(steps.items())),
    }
    return {name: entry}


def load_stats(path: str | Path, name: str = DEFAULT_NAME) -> dict:
    """The entry ``name`` of a ``dataset_stat.json``; a missing file or entry is a UserError."""
    path = Path(path)
    data = read_json(path, "dataset statistics not found (made by `python -m rdt stats`)")
    if name not in data or "state_mean" not in data[name]:
        raise UserError(f"{path}: no dataset entry {name!r} with 'state_mean'; entries: {sorted(data)}")
    if len(data[name]["state_mean"]) != statevec.STATE_DIM:
        raise UserError(
            f"{path}: {name}.state_mean has {len(data[name]['state_mean'])} values, expected {statevec.STATE_DIM}"
        )
    return data[name]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="training HDF5 written by `python -m rdt convert`")
    parser.add_argument("--out", required=True, help="dataset_stat.json to write")
    parser.add_argument("--name", default=DEFAULT_NAME, help=f"dataset name (key of the entry; default {DEFAULT_NAME})")


def main(args: argparse.Namespace) -> int:
    stats = compute_stats(args.data, args.name)
    write_json(args.out, stats)
    e = stats[args.name]
    print(
        f"wrote {args.out}: {args.name}: {e['num_episodes']} episodes, {e['num_steps']} steps, "
        f"{len(e['episodes_per_task'])} task(s)"
    )
    return 0


def load_entry(path: str | Path) -> dict:
    """The dataset entry of a dataset_stat.json that training and evaluation use: its only entry, or
    ``libero`` (DEFAULT_NAME) when there are several."""
    try:
        names = list(read_json(path))
    except (UserError, TypeError):  # load_stats names the problem
        names = []
    return load_stats(path, names[0] if len(names) == 1 else DEFAULT_NAME)
