"""Data-loading throughput of rdt.data.dataset.LiberoDataset against a naive reader, and the training target.

Generates its own data (synthetic episodes in the official LIBERO demo layout via tests/official_layout.py,
converted with rdt.libero.convert), then measures samples/s through a torch DataLoader (default 4 workers,
batch 4) for: a naive reader that opens the file and reads whole episodes for every sample; the Dataset with
no augmentation; the Dataset with RDT's training options (condition masking 0.1, state noise 40 dB, image
augmentation); and the latter plus the SigLIP-style preprocessing to 384x384 that training runs in the workers.
The target is the rate 8 GPUs x per-device batch 4 consume at the assumed RDT-1B step time; the CPU time per
sample (measured in one process, so independent of other load) gives the cores a node needs for it.

    python bench/dataloader.py [--seconds 8] [--workers 4] [--batch 4] [--gpus 8] [--step-time 0.5]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
os.environ.setdefault("OMP_NUM_THREADS", "1")

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, Dataset, RandomSampler  # noqa: E402

from official_layout import write_demo_file  # noqa: E402
from rdt.data.dataset import CHUNK_SIZE, LiberoDataset, collate  # noqa: E402
from rdt.data.stats import compute_stats  # noqa: E402
from rdt.encoders import ImagePreprocessor  # noqa: E402
from rdt.libero import suites  # noqa: E402
from rdt.libero.convert import convert  # noqa: E402

NAIVE = "naive reader (whole episode per sample)"


class NaiveReader(Dataset):
    """Opens the file for every sample and reads the whole episode (states, actions, all frames of both cameras)."""

    def __init__(self, path: Path, lengths: np.ndarray) -> None:
        self.path = path
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int) -> dict:
        e = int(np.searchsorted(self.offsets, index, side="right") - 1)
        t = int(index - self.offsets[e])
        with h5py.File(self.path, "r") as f:
            g = f["episodes"][f"{e:06d}"]
            state, action = g["state"][()], g["action"][()]
            ext, wrist = g["images/exterior"][()], g["images/right_wrist"][()]
            instruction = str(g.attrs["instruction"])
        steps = np.minimum(np.arange(t, t + CHUNK_SIZE), len(action) - 1)
        background = np.full_like(ext[0], 127)
        prev = max(t - 1, 0)
        frames = [ext[prev], wrist[prev], background, ext[t], wrist[t], background]
        return {
            "state": torch.from_numpy(state[t : t + 1]),
            "actions": torch.from_numpy(action[steps]),
            "state_mask": torch.ones(128),
            "images": torch.from_numpy(np.stack(frames)),
            "image_valid": torch.tensor([t > 0, t > 0, False, True, True, False]),
            "instruction": instruction,
            "ctrl_freq": 20,
            "episode": e,
            "step": t,
        }


def make_data(folder: Path, tasks: int, demos: int, steps: int) -> Path:
    names = [t.name for t in suites.tasks("libero_90")[:tasks]]
    for k, name in enumerate(names):
        write_demo_file(folder / f"{name}_demo.hdf5", name, None, [steps] * demos, seed=k)
    out = folder / "train.h5"
    convert([str(folder)], out, suite="libero_90")
    return out


def measure(dataset: Dataset, seconds: float, workers: int, batch: int) -> float:
    """Samples/s after the first batch (worker start-up excluded), over about ``seconds``."""
    sampler = RandomSampler(dataset, replacement=True, num_samples=10**7, generator=torch.Generator().manual_seed(0))
    loader = DataLoader(
        dataset,
        batch_size=batch,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
    )
    it = iter(loader)
    next(it)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        n += len(next(it)["step"])
    rate = n / (time.perf_counter() - start)
    del it
    return rate


def cpu_cost(dataset: Dataset, seconds: float) -> float:
    """CPU seconds per sample in this process (independent of other load on the machine)."""
    rng = np.random.default_rng(0)
    n, wall, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - wall < seconds:
        dataset[int(rng.integers(len(dataset)))]
        n += 1
    return (time.process_time() - cpu) / n


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=8.0, help="measuring time per loader (default 8)")
    p.add_argument("--workers", type=int, default=4, help="DataLoader workers (default 4)")
    p.add_argument("--batch", type=int, default=4, help="batch size (default 4)")
    p.add_argument("--gpus", type=int, default=8, help="GPUs the target is computed for (default 8)")
    p.add_argument(
        "--step-time",
        type=float,
        default=0.5,
        help="assumed RDT-1B optimizer step time in seconds at per-device batch --batch (default 0.5)",
    )
    p.add_argument("--tasks", type=int, default=3)
    p.add_argument("--demos", type=int, default=4)
    p.add_argument("--steps", type=int, default=120, help="steps per synthetic demo (128x128 frames)")
    args = p.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="This DataLoader will create")  # 4 workers on fewer cores: on purpose
    with tempfile.TemporaryDirectory(prefix="rdt-bench-") as tmp:
        t0 = time.perf_counter()
        data = make_data(Path(tmp), args.tasks, args.demos, args.steps)
        stats = compute_stats(data)["libero"]
        size_mb = data.stat().st_size / 2**20
        print(
            f"data: {args.tasks} tasks x {args.demos} demos x {args.steps} steps, 128x128 frames, "
            f"{size_mb:.1f} MiB converted (generated in {time.perf_counter() - t0:.1f} s); "
            f"{os.cpu_count()} CPU cores; DataLoader {args.workers} workers, batch {args.batch}"
        )
        plain = dict(cond_mask_prob=0.0, state_noise_snr=None, image_aug=False)
        ours = LiberoDataset(data, None, stats, **plain)
        loaders = {
            NAIVE: NaiveReader(data, ours.lengths),
            "LiberoDataset (no augmentation)": ours,
            "LiberoDataset (RDT options: masking, noise, augmentation)": LiberoDataset(data, None, stats),
            "  + SigLIP preprocessing to 384x384 in the workers": LiberoDataset(
                data, None, stats, image_transform=ImagePreprocessor(384)
            ),
        }
        rates, costs = {}, {}
        print(f"{'':<60} {'DataLoader':>12} {'CPU per sample':>15}")
        for name, ds in loaders.items():
            rates[name] = measure(ds, args.seconds, args.workers, args.batch)
            costs[name] = cpu_cost(ds, min(args.seconds, 3.0))
            print(f"{name:<60} {rates[name]:8.1f} /s {1000 * costs[name]:12.1f} ms", flush=True)
    naive, fast = NAIVE, "LiberoDataset (no augmentation)"
    print(
        f"speed-up over the naive reader (no augmentation): {rates[fast] / rates[naive]:.1f}x in samples/s, "
        f"{costs[naive] / costs[fast]:.1f}x in CPU time per sample"
    )
    target = args.gpus * args.batch / args.step_time
    per_process = args.batch / args.step_time
    print(
        f"target: {args.gpus} GPUs x batch {args.batch} / {args.step_time} s per step (ASSUMED RDT-1B step time, "
        f"not measured) = {target:.0f} samples/s in total, {per_process:.0f} samples/s per training process"
    )
    ours = [k for k in rates if k != NAIVE]
    worst = min(ours, key=lambda k: rates[k])
    print(
        f"slowest LiberoDataset configuration here: {rates[worst]:.1f} samples/s with {args.workers} workers on "
        f"{os.cpu_count()} shared cores -> {target:.0f}/s total: {'MET' if rates[worst] >= target else 'NOT met'}; "
        f"{per_process:.0f}/s per training process (each has its own loader): "
        f"{'met' if rates[worst] >= per_process else 'NOT met'}"
    )
    for k in ours:
        print(
            f"cores needed for {target:.0f} samples/s at {1000 * costs[k]:.1f} CPU-ms/sample: "
            f"{target * costs[k]:5.1f}  ({k.strip()})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
