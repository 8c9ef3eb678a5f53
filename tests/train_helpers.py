"""Shared set-up for the trainer tests: a small converted dataset, its statistics and tiny-encoder language
embeddings, and RUN.yaml files for the tiny model.

The data goes through the real pipeline: synthetic demo files in the official LIBERO layout
(tests/official_layout.py, an independent writer) -> ``rdt.libero.convert`` -> ``rdt.data.stats`` ->
``rdt.lang.encode_instructions`` with the tiny T5 (plus the empty instruction used by condition masking).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from official_layout import write_demo_file

REPO = Path(__file__).resolve().parents[1]
TASKS = {
    "KITCHEN_SCENE7_open_the_microwave": [40, 36, 30],
    "KITCHEN_SCENE7_put_the_white_bowl_on_the_plate": [34, 38, 32],
}
IMAGE_SIZE = 16

# a tiny, fast recipe: everything else is the RDT-1B default
TINY_RUN = dict(
    model="tiny",
    init_from=None,
    text_encoder="tiny",
    vision_encoder="tiny",
    effective_batch_size=8,
    per_device_batch_size=4,
    learning_rate=1e-3,
    lr_warmup_steps=5,
    checkpointing_period=5,
    checkpoints_total_limit=30,
    sample_period=0,
    sample_batches=1,
    dataloader_num_workers=0,
    log_period=10,
    seed=3,
)


def make_data(root: Path) -> dict[str, str]:
    """Write demos, convert, compute statistics and encode the instructions under ``root``; returns the paths
    for RUN.yaml (data, lang, stats)."""
    from rdt.data.stats import compute_stats
    from rdt.encoders import load_text_encoder
    from rdt.lang import encode_instructions, instructions_from_training_file
    from rdt.libero.convert import convert
    from rdt.utils.atomic import write_json

    root = Path(root)
    demos = root / "demos"
    demos.mkdir(parents=True, exist_ok=True)
    for k, (task, steps) in enumerate(TASKS.items()):
        path = write_demo_file(demos / f"{task}_demo.hdf5", task, None, steps, seed=k, image_size=IMAGE_SIZE)
        smooth_actions(path, phase=float(k))
    data = root / "data.h5"
    convert([str(demos)], data)
    stats = root / "dataset_stat.json"
    write_json(stats, compute_stats(data))
    lang = root / "lang.safetensors"
    encode_instructions([""] + instructions_from_training_file(data), load_text_encoder("tiny"), lang)
    return {"data": str(data), "lang": str(lang), "stats": str(stats)}


def smooth_actions(path: Path, phase: float) -> None:
    """Replace the arm commands (first 6 of 7) of every demo by smooth functions of time, like a scripted
    expert's, so that a short run has something learnable (the writer's commands are i.i.d. noise); the gripper
    command (open, closed in the middle third) is kept."""
    import h5py
    import numpy as np

    with h5py.File(path, "r+") as f:
        for name in f["data"]:
            actions = f["data"][name]["actions"]
            t = np.linspace(0.0, 1.0, actions.shape[0])[:, None]
            a = actions[()]
            a[:, :6] = 0.8 * np.sin(2 * np.pi * t * np.arange(1, 7) / 3 + phase)
            actions[...] = a


def write_run(path: Path, data: dict[str, str], **overrides) -> Path:
    """RUN.yaml with the tiny recipe, the data paths and ``overrides``."""
    settings = {**TINY_RUN, **data, **overrides}
    Path(path).write_text(yaml.safe_dump(settings, sort_keys=False))
    return Path(path)


def load_run(data: dict[str, str], **overrides):
    from rdt import train_config

    return train_config.from_dict({**TINY_RUN, **data, **overrides})


def env(**extra: str) -> dict[str, str]:
    """Environment for subprocesses: the repository and tests on the path, few threads, offline hubs; ``extra``
    variables on top."""
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "tests"), e.get("PYTHONPATH", "")])
    e.update(
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return e


def free_port() -> int:
    """A TCP port of localhost that is free now (accelerate's --main_process_port, the test cluster's daemons)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerate_launch(processes: int, script: list[str]) -> list[str]:
    """``accelerate launch`` of ``processes`` processes on one machine (on CPU: torch.distributed over gloo), fp32,
    on a free port, each running ``script`` (a Python file and its arguments)."""
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
        *script,
    ]


def train_command(config: Path, until: int, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "rdt",
        "train",
        "--config",
        str(config),
        "--until-step",
        str(until),
        "--out",
        str(out),
    ]


def run_train(config: Path, until: int, out: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        train_command(config, until, out), cwd=REPO, env=env(), capture_output=True, text=True, timeout=timeout
    )


def state_dict_of(folder: Path, weights: str = "model"):
    from rdt.model.checkpoint import load_runner

    runner, _ = load_runner(folder, weights=weights)
    return runner.state_dict()


def trainer_state(folder: Path) -> dict:
    return json.loads((Path(folder) / "trainer_state.json").read_text())


# ------------------------------------------------------------------------------------------------ instrumented run
def observe_sample_positions(steps: dict[str, list[int]]) -> None:
    """Wrap ``Trainer.accumulate`` so that ``steps[str(n)]`` receives the global positions of the samples whose loss
    went into optimizer step n (in this process)."""
    from rdt.training import trainer as trainer_module

    original = trainer_module.Trainer.accumulate

    def accumulate(self, micro_batches):
        seen: list[int] = []

        def observed():
            for batch in micro_batches:
                seen.extend(int(p) for p in batch["position"])
                yield batch

        result = original(self, observed())
        steps[str(self.step + 1)] = seen
        return result

    trainer_module.Trainer.accumulate = accumulate


def instrumented_main(argv: list[str]) -> int:
    """``python tests/train_helpers.py RECORD_DIR -- <rdt train arguments>`` (also under ``accelerate launch``).

    Runs the real ``rdt train`` command line with three observers added around the trainer's own code:
    for every optimizer step, the global positions of the samples whose loss went into it (per process); the
    flattened gradient (after the all-reduce, before clipping) of the first two optimizer steps; and every call
    that writes a checkpoint folder, with the writing process's rank. Each process writes RECORD_DIR/rank<r>.json
    and grads_rank<r>_step<n>.pt.
    """
    import torch

    from rdt import cli
    from rdt.model import checkpoint
    from rdt.training import trainer as trainer_module

    record_dir = Path(argv[0])
    rest = argv[argv.index("--") + 1 :]
    record_dir.mkdir(parents=True, exist_ok=True)
    rank = int(os.environ.get("RANK", "0"))
    log: dict = {"rank": rank, "world_size": int(os.environ.get("WORLD_SIZE", "1")), "steps": {}, "writes": []}

    observe_sample_positions(log["steps"])
    original_step, original_save = trainer_module.Trainer.optimizer_step, checkpoint.save_checkpoint

    def optimizer_step(self):
        if self.step < 2:
            grads = torch.cat([p.grad.detach().flatten().double() for p in self.runner.parameters()])
            torch.save(grads, record_dir / f"grads_rank{rank}_step{self.step + 1}.pt")
        return original_step(self)

    def save_checkpoint(folder, *args, **kwargs):
        log["writes"].append(str(folder))
        return original_save(folder, *args, **kwargs)

    trainer_module.Trainer.optimizer_step = optimizer_step
    checkpoint.save_checkpoint = save_checkpoint
    try:
        return cli.main(rest)
    finally:
        (record_dir / f"rank{rank}.json").write_text(json.dumps(log))


if __name__ == "__main__":
    sys.path[:0] = [str(REPO), str(REPO / "tests")]
    raise SystemExit(instrumented_main(sys.argv[1:]))
