"""Two real CPU processes (``accelerate launch --multi_gpu --num_processes 2`` on a machine without GPUs: torchrun
starts both, and the trainer's Accelerator uses torch.distributed over gloo) with
gradient accumulation, against one process that takes the whole effective batch in one micro-batch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import train_helpers as h

EFFECTIVE = 8
STEPS = 3


def _launch(tmp_path, data, name, per_device, processes):
    run = h.write_run(
        tmp_path / f"{name}.yaml",
        data,
        effective_batch_size=EFFECTIVE,
        per_device_batch_size=per_device,
        checkpointing_period=2,
    )
    record, out = tmp_path / f"{name}_record", tmp_path / f"{name}_out"
    helper = [
        str(h.REPO / "tests" / "train_helpers.py"),
        str(record),
        "--",
        "train",
        "--config",
        str(run),
        "--until-step",
        str(STEPS),
        "--out",
        str(out),
    ]
    cmd = h.accelerate_launch(processes, helper) if processes > 1 else [sys.executable, *helper]
    proc = subprocess.run(cmd, cwd=h.REPO, env=h.env(), capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    logs = [json.loads((record / f"rank{r}.json").read_text()) for r in range(processes)]
    return logs, record, out, proc.stdout


def test_collectives_wait_long_enough_for_rank_0_to_write_a_checkpoint():
    """Rank 0 alone writes checkpoints and exports (about 20 and 10 GB for rdt-1b in fp32) while the other ranks wait
    at a collective: the process group's timeout is set explicitly, not NCCL's 10-minute default."""
    from datetime import timedelta

    from rdt.training.backend import COLLECTIVE_TIMEOUT, process_group_kwargs

    kwargs = process_group_kwargs().to_kwargs()
    assert kwargs["timeout"] == COLLECTIVE_TIMEOUT >= timedelta(hours=1)
    assert kwargs.get("backend", "nccl") == ("nccl" if torch.cuda.is_available() else "gloo")


@pytest.mark.slow
def test_two_processes_with_accumulation_match_one_process_with_the_whole_batch(tmp_path):
    data = h.make_data(tmp_path / "data")
    logs2, rec2, out2, stdout2 = _launch(tmp_path, data, "two", per_device=2, processes=2)
    logs1, rec1, out1, _ = _launch(tmp_path, data, "one", per_device=EFFECTIVE, processes=1)

    # the log states the batch arithmetic: 8 = 2 per device x 2 accumulation x 2 processes
    assert "effective batch 8 = 2 per device x 2 accumulation x 2 processes" in stdout2
    assert [log["world_size"] for log in logs2] == [2, 2]

    # every optimizer step received exactly the effective batch, no sample twice, none lost
    for step in range(1, STEPS + 1):
        per_rank = [log["steps"][str(step)] for log in logs2]
        assert [len(p) for p in per_rank] == [EFFECTIVE // 2] * 2
        merged = sorted(per_rank[0] + per_rank[1])
        assert merged == list(range((step - 1) * EFFECTIVE, step * EFFECTIVE))
        assert sorted(logs1[0]["steps"][str(step)]) == merged

    # the synchronised gradients equal those of one process with the whole batch
    for step in (1, 2):
        g_rank0 = torch.load(rec2 / f"grads_rank0_step{step}.pt")
        g_rank1 = torch.load(rec2 / f"grads_rank1_step{step}.pt")
        g_one = torch.load(rec1 / f"grads_rank0_step{step}.pt")
        assert torch.allclose(g_rank0, g_rank1, rtol=0, atol=1e-12)
        rel = float((g_rank0 - g_one).norm() / g_one.norm())
        assert rel < 1e-4, f"step {step}: relative gradient difference {rel}"

    # checkpoints (and the export) are written by rank 0 only
    assert logs2[1]["writes"] == []
    written = [p.split("/")[-1] for p in logs2[0]["writes"]]
    assert sum(w.startswith(".checkpoint-2") for w in written) == 1 and "step-3" in written
    assert sorted(p.name for p in (out2 / "checkpoints").iterdir()) == ["checkpoint-2", "checkpoint-3"]
    state = h.trainer_state(out2 / "checkpoints" / "checkpoint-3")
    assert (state["num_processes"], state["accumulation"], state["samples_seen"]) == (2, 2, STEPS * EFFECTIVE)
