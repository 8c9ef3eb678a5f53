"""``deepspeed: zero2``: accelerate's DeepSpeedPlugin built from the run config, the error without the package, and
two real CPU processes on DeepSpeed ZeRO-2 (its CPU accelerator, torch.distributed over gloo) that train in two
segments (checkpoint, resume) and follow the same trajectory as the DDP trainer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import train_helpers as h
from rdt import layout
from rdt.errors import UserError
from rdt.training import backend, run_folder

EFFECTIVE, PER_DEVICE, PROCESSES = 8, 2, 2
CLIP = 0.05  # small enough that every step is clipped, so a run without clipping would diverge


def test_plugin_is_zero2_with_the_trainers_clipping_accumulation_and_micro_batch():
    cfg = h.load_run(
        {"data": "d.h5", "lang": "l.safetensors", "stats": "s.json"},
        deepspeed="zero2",
        max_grad_norm=0.3,
        per_device_batch_size=4,
    )
    ds = backend.deepspeed_plugin(cfg, accumulation=16, precision="no").deepspeed_config
    assert ds["zero_optimization"]["stage"] == 2
    assert ds["gradient_clipping"] == 0.3
    assert ds["gradient_accumulation_steps"] == 16
    assert ds["train_micro_batch_size_per_gpu"] == 4


def test_zero2_without_the_package_is_an_error_naming_the_key(monkeypatch):
    cfg = h.load_run({"data": "d.h5", "lang": "l.safetensors", "stats": "s.json"}, deepspeed="zero2")
    monkeypatch.setitem(sys.modules, "deepspeed", None)  # makes `import deepspeed` raise ImportError
    with pytest.raises(UserError, match=r"'deepspeed'.*`pip install deepspeed`"):
        backend.deepspeed_plugin(cfg, accumulation=1, precision="no")


def test_zero2_in_a_single_process_is_an_error_naming_the_key(tmp_path):
    run = h.write_run(
        tmp_path / "run.yaml", {"data": "d.h5", "lang": "l.safetensors", "stats": "s.json"}, deepspeed="zero2"
    )
    proc = h.run_train(run, 1, tmp_path / "out", timeout=120)
    assert proc.returncode != 0
    assert "'deepspeed' = 'zero2'" in proc.stderr + proc.stdout and "accelerate launch" in proc.stderr + proc.stdout


# ------------------------------------------------------------------------------------------------ real processes
def _launch(tmp_path: Path, run: Path, out: Path, until: int, record: Path) -> str:
    """``accelerate launch`` of two processes running ``rdt train`` with the sample positions recorded."""
    cmd = h.accelerate_launch(
        PROCESSES,
        [
            str(Path(__file__)),
            str(record),
            "--",
            "train",
            "--config",
            str(run),
            "--until-step",
            str(until),
            "--out",
            str(out),
        ],
    )
    proc = subprocess.run(cmd, cwd=h.REPO, env=h.env(DS_ACCELERATOR="cpu"), capture_output=True, text=True, timeout=500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _positions(record: Path) -> dict[int, list[int]]:
    """Optimizer step -> the global sample positions that went into it, over both processes."""
    merged: dict[int, list[int]] = {}
    for r in range(PROCESSES):
        for step, seen in json.loads((record / f"rank{r}.json").read_text()).items():
            merged.setdefault(int(step), []).extend(seen)
    return merged


@pytest.mark.slow
def test_zero2_two_processes_resume_and_match_ddp(tmp_path):
    data = h.make_data(tmp_path / "data")
    common = dict(
        effective_batch_size=EFFECTIVE,
        per_device_batch_size=PER_DEVICE,
        checkpointing_period=2,
        max_grad_norm=CLIP,
        lr_warmup_steps=2,
    )
    ds_run = h.write_run(tmp_path / "zero2.yaml", data, deepspeed="zero2", **common)
    ddp_run = h.write_run(tmp_path / "ddp.yaml", data, **common)
    ds_out, ddp_out = tmp_path / "zero2_out", tmp_path / "ddp_out"

    first = _launch(tmp_path, ds_run, ds_out, 2, tmp_path / "rec_a")
    assert "effective batch 8 = 2 per device x 2 accumulation x 2 processes" in first
    ckpt = ds_out / "checkpoints" / "checkpoint-2"
    assert (ckpt / run_folder.DEEPSPEED_STATE).is_dir() and not (ckpt / run_folder.OPTIMIZER_FILE).exists()
    second = _launch(tmp_path, ds_run, ds_out, 4, tmp_path / "rec_b")
    assert "from checkpoint-2" in second
    _launch(tmp_path, ddp_run, ddp_out, 4, tmp_path / "rec_ddp")

    # every optimizer step received exactly the effective batch, in both segments
    seen = {**_positions(tmp_path / "rec_a"), **_positions(tmp_path / "rec_b")}
    assert sorted(seen) == [1, 2, 3, 4]
    for step, positions in seen.items():
        assert sorted(positions) == list(range((step - 1) * EFFECTIVE, step * EFFECTIVE))
    assert h.trainer_state(ds_out / "checkpoints" / "checkpoint-4")["samples_seen"] == 4 * EFFECTIVE

    # the resumed ZeRO-2 run follows the uninterrupted DDP run: same losses, LRs and pre-clip gradient norms
    ds_rows, ddp_rows = run_folder.read_metrics(ds_out), run_folder.read_metrics(ddp_out)
    assert [r["step"] for r in ds_rows] == [1, 2, 3, 4] and all(r["samples"] == EFFECTIVE for r in ds_rows)
    assert all(r["grad_norm"] > 2 * CLIP for r in ddp_rows)  # clipping is active on every step
    for a, b in zip(ds_rows, ddp_rows):
        assert a["lr"] == pytest.approx(b["lr"], rel=1e-6)
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-3)

    # the exported weights and EMA (step 4, after the resume) equal the DDP run's
    for weights in ("model", "ema"):
        got = h.state_dict_of(layout.export_dir(ds_out, 4), weights)
        want = h.state_dict_of(layout.export_dir(ddp_out, 4), weights)
        worst = max(float((got[k] - want[k]).abs().max()) for k in want)
        assert worst < 1e-5, f"{weights}: largest difference {worst}"

    # bf16: the engine's autocast (fp32 weights) gives the DDP trainer's bf16 numbers, sample MSE of the EMA included
    bf16 = dict(common, mixed_precision="bf16", sample_period=2)
    ds_bf16, ddp_bf16 = tmp_path / "zero2_bf16_out", tmp_path / "ddp_bf16_out"
    _launch(
        tmp_path,
        h.write_run(tmp_path / "zero2_bf16.yaml", data, deepspeed="zero2", **bf16),
        ds_bf16,
        2,
        tmp_path / "rec_bf16",
    )
    _launch(tmp_path, h.write_run(tmp_path / "ddp_bf16.yaml", data, **bf16), ddp_bf16, 2, tmp_path / "rec_ddp_bf16")
    ds_rows, ddp_rows = run_folder.read_metrics(ds_bf16), run_folder.read_metrics(ddp_bf16)
    assert ds_rows[0]["grad_norm"] != pytest.approx(run_folder.read_metrics(ddp_out)[0]["grad_norm"], rel=1e-4)
    for a, b in zip(ds_rows, ddp_rows):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)
    assert ds_rows[1]["sample_mse"] == pytest.approx(ddp_rows[1]["sample_mse"], rel=1e-3)
    exported = load_file(layout.export_dir(ds_bf16, 2) / "model.safetensors")  # fp32 weights, not bf16 copies
    assert {v.dtype for v in exported.values()} == {torch.float32}


# ------------------------------------------------------------------------------------------------ observer
def _recorded_main(argv: list[str]) -> int:
    """``python tests/test_train_deepspeed.py RECORD_DIR -- <rdt arguments>``: the real command line, with the
    global sample positions of every optimizer step written to RECORD_DIR/rank<r>.json by each process."""
    from rdt import cli

    record = Path(argv[0])
    record.mkdir(parents=True, exist_ok=True)
    rank = int(os.environ.get("RANK", "0"))
    steps: dict[str, list[int]] = {}
    h.observe_sample_positions(steps)
    try:
        return cli.main(argv[argv.index("--") + 1 :])
    finally:
        (record / f"rank{rank}.json").write_text(json.dumps(steps))


if __name__ == "__main__":
    raise SystemExit(_recorded_main(sys.argv[1:]))
