"""The trainer on the tiny model and a small converted dataset (CPU): warmup, clipping, kill and resume,
segments, export, retention, stale checkpoints, and that training reduces the loss."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import train_helpers as h
from rdt import layout
from rdt.errors import UserError
from rdt.model.checkpoint import load_runner
from rdt.model.config import RDTConfig
from rdt.model.runner import RDTRunner
from rdt.training import command, run_folder
from rdt.training import trainer as trainer_module

LR = 1e-3


@pytest.fixture(scope="module")
def data(train_data, module_torch_thread):
    return train_data


@pytest.fixture(scope="module")
def short_run(data, tmp_path_factory):
    """8 steps, warmup 5, sample MSE every 4 steps, checkpoints every 5 (and at 8)."""
    out = tmp_path_factory.mktemp("short") / "run"
    cfg = h.load_run(data, sample_period=4)
    command.train_segment(cfg, 8, out)
    return cfg, out


def test_log_states_the_batch_formula_and_lr_follows_warmup(data, short_run, capsys, tmp_path):
    cfg, out = short_run
    rows = run_folder.read_metrics(out)
    assert [int(r["step"]) for r in rows] == list(range(1, 9))
    assert [r["lr"] for r in rows] == pytest.approx([LR * min(1.0, n / 5) for n in range(1, 9)], rel=1e-6)
    assert all(r["samples"] == 8 and r["grad_norm"] > 0 and r["step_time_s"] > 0 for r in rows)
    assert [int(r["step"]) for r in rows if "sample_mse" in r] == [4, 8]
    assert all(np.isfinite(r["sample_mse"]) and r["sample_mse"] > 0 for r in rows if "sample_mse" in r)
    # the first lines of a run state the batch arithmetic
    command.train_segment(h.load_run(data, effective_batch_size=16), 1, tmp_path / "formula")
    day, clock, first = capsys.readouterr().out.splitlines()[0].split(" ", 2)  # each line starts with the time
    time.strptime(f"{day} {clock}", "%Y-%m-%d %H:%M:%S")
    assert first == "train: effective batch 16 = 4 per device x 4 accumulation x 1 processes"


def test_export_loads_strictly_into_the_model_and_a_fresh_runner(short_run, capsys):
    cfg, out = short_run
    export = layout.export_dir(out, 8)
    assert sorted(p.name for p in export.iterdir()) == ["config.json", "ema", "model.safetensors", "pipeline.json"]
    pipeline = json.loads((export / "pipeline.json").read_text())
    assert pipeline["step"] == 8 and pipeline["text_encoder"] == "tiny" and pipeline["vision_encoder"] == "tiny"
    assert pipeline["control_frequency"] == 20 and pipeline["image_size"] == h.IMAGE_SIZE
    assert pipeline["action_space"] == "delta_eef" and len(pipeline["dataset_stat"]["state_mean"]) == 128
    model, _ = load_runner(export, weights="model")
    ema, _ = load_runner(export, weights="ema")
    fresh = RDTRunner(RDTConfig.preset("tiny"))
    fresh.load_state_dict(load_file(str(export / "model.safetensors")), strict=True)
    fresh.load_state_dict(load_file(str(export / "ema" / "model.safetensors")), strict=True)
    ckpt = h.state_dict_of(run_folder.checkpoint_dir(out, 8))
    for k, v in model.state_dict().items():
        assert torch.equal(v, ckpt[k]), k
    assert any(not torch.equal(v, ema.state_dict()[k]) for k, v in model.state_dict().items())
    # a rerun of the same segment only re-exports: same step count, no training
    rows_before = run_folder.read_metrics(out)
    command.train_segment(cfg, 8, out)
    assert "checkpoint-8 exists with these settings" in capsys.readouterr().out
    assert run_folder.read_metrics(out) == rows_before
    assert h.trainer_state(run_folder.checkpoint_dir(out, 8))["step"] == 8


def test_stale_checkpoint_from_other_settings_is_not_resumed(data, short_run, capsys):
    cfg, out = short_run
    other = h.load_run(data, learning_rate=2 * LR, sample_period=4)
    command.train_segment(other, 6, out)
    text = capsys.readouterr().out
    assert "ignoring" in text and "checkpoint-5" in text and "from random init" in text
    state = h.trainer_state(run_folder.checkpoint_dir(out, 6))
    assert state["fingerprint"] == other.fingerprint() != cfg.fingerprint()
    assert run_folder.find_resume(out, other.fingerprint(), 100)[0] == 6
    assert run_folder.find_resume(out, cfg.fingerprint(), 100)[0] == 8


def test_non_dividing_batch_is_a_clear_error(data, tmp_path):
    with pytest.raises(UserError, match=r"effective_batch_size=10 .*per_device_batch_size=4 x num_processes=1"):
        command.train_segment(h.load_run(data, effective_batch_size=10), 2, tmp_path / "bad")
    run = h.write_run(tmp_path / "bad.yaml", data, effective_batch_size=10)
    proc = h.run_train(run, 2, tmp_path / "bad_cli")
    assert proc.returncode == 2 and "effective_batch_size=10" in proc.stderr


def test_clipping_keeps_a_huge_loss_batch_from_blowing_up_the_weights(data, tmp_path):
    cfg = h.load_run(data, effective_batch_size=4, lr_warmup_steps=0)
    trainer = trainer_module.Trainer(cfg, tmp_path / "clip")
    batches = trainer.data_iterator()
    for _ in range(3):
        trainer.accumulate(batches)
        trainer.optimizer_step()
    huge = next(batches)
    huge["actions"] = huge["actions"] * 1e4  # loss ~1e7 x normal
    params = list(trainer.runner.parameters())
    before = [p.detach().clone() for p in params]
    v_before = [trainer.optimizer.state[p]["exp_avg_sq"].clone() for p in params]
    loss, _ = trainer.accumulate([huge])
    grad_norm, _ = trainer.optimizer_step()
    assert loss > 1e5 and grad_norm > 1e3
    # the gradient that reached AdamW had norm <= max_grad_norm: v_new = b2 v_old + (1 - b2) g^2
    b2 = cfg.adam_beta2
    g2 = sum(
        float(((trainer.optimizer.state[p]["exp_avg_sq"] - b2 * v) / (1 - b2)).sum()) for p, v in zip(params, v_before)
    )
    assert g2 == pytest.approx(cfg.max_grad_norm**2, rel=1e-3)
    change = max(float((p.detach() - b).abs().max()) for p, b in zip(params, before))
    assert all(torch.isfinite(p).all() for p in params) and change < 20 * cfg.learning_rate


@pytest.mark.slow
def test_kill_and_resume_continues_exactly(data, tmp_path):
    # one data worker, and the signal goes to the whole process group, as a cluster's preemption does
    run = h.write_run(tmp_path / "run.yaml", data, checkpointing_period=5, dataloader_num_workers=1)
    until = 24
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        h.train_command(run, until, killed),
        cwd=h.REPO,
        env=h.env(),
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            metrics = killed / run_folder.METRICS
            if metrics.is_file() and len(metrics.read_text().splitlines()) > 7:  # header + 7 steps
                break
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGTERM)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, output[-2000:]
    stopped = max(step for step, _ in run_folder.list_checkpoints(killed))
    assert 7 <= stopped < until and f"stopped by signal SIGTERM at step {stopped}" in output
    assert [int(r["step"]) for r in run_folder.read_metrics(killed)] == list(range(1, stopped + 1))

    resumed = h.run_train(run, until, killed)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert f"from checkpoint-{stopped}" in resumed.stdout

    reference = tmp_path / "reference"
    command.train_segment(h.load_run(data, checkpointing_period=5), until, reference)

    got, want = run_folder.read_metrics(killed), run_folder.read_metrics(reference)
    assert [int(r["step"]) for r in got] == list(range(1, until + 1))
    assert [r["lr"] for r in got] == [r["lr"] for r in want]
    assert [r["loss"] for r in got] == pytest.approx([r["loss"] for r in want], rel=1e-4)
    final = run_folder.checkpoint_dir(killed, until)
    optimizer = torch.load(final / run_folder.OPTIMIZER_FILE, weights_only=True)
    assert {int(s["step"]) for s in optimizer["state"].values()} == {until}
    assert torch.load(final / run_folder.SCHEDULER_FILE, weights_only=True)["last_epoch"] == until
    assert h.trainer_state(final)["ema_optimization_step"] == until
    for weights in ("model", "ema"):
        a = h.state_dict_of(layout.export_dir(killed, until), weights)
        b = h.state_dict_of(layout.export_dir(reference, until), weights)
        for k in a:
            assert torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-6), (weights, k)


@pytest.mark.slow
def test_tiny_run_reduces_the_loss_and_keeps_at_most_the_checkpoint_limit(data, tmp_path):
    out = tmp_path / "learn"
    cfg = h.load_run(data, learning_rate=1e-2, lr_warmup_steps=5, checkpointing_period=20, checkpoints_total_limit=2)
    command.train_segment(cfg, 100, out)
    losses = [r["loss"] for r in run_folder.read_metrics(out)]
    first, last = np.mean(losses[:10]), np.mean(losses[-10:])
    assert last < 0.5 * first, (first, last)
    assert [s for s, _ in run_folder.list_checkpoints(out)] == [80, 100]
    assert layout.export_dir(out, 100).is_dir()


def test_ema_follows_the_decay_once_per_call_in_fp32():
    from rdt import train_config
    from rdt.ema import EMA

    cfg = train_config.from_dict({"data": "d", "lang": "l", "stats": "s"})
    model = torch.nn.Linear(3, 2).to(torch.bfloat16)
    model.bias.requires_grad_(False)
    ema = EMA(model, cfg.ema_decay)
    assert all(p.dtype == torch.float32 and not p.requires_grad for p in ema.model.parameters())
    with torch.no_grad():
        model.weight.fill_(1.0)
        model.bias.fill_(5.0)
    assert ema.step(model) == 0.0  # optimizer step 1: decay 0 = copy
    assert torch.equal(ema.model.weight, torch.ones(2, 3))
    with torch.no_grad():
        model.weight.fill_(3.0)
        model.bias.fill_(7.0)
    decay = ema.step(model)  # optimizer step 2: decay(1) = 1 - 2^-0.75
    assert decay == pytest.approx(1 - 2**-0.75)
    assert torch.allclose(ema.model.weight, torch.full((2, 3), decay * 1.0 + (1 - decay) * 3.0))
    assert torch.equal(ema.model.bias, torch.full((2,), 7.0))  # no gradient -> copied
    assert ema.optimization_step == 2


def test_bf16_autocast_keeps_fp32_master_weights_and_ema(data, tmp_path):
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()  # the other tests created an fp32 accelerator in this process
    try:
        trainer = trainer_module.Trainer(h.load_run(data, mixed_precision="bf16"), tmp_path / "bf16")
        seen = []
        linear = next(m for m in trainer.runner.modules() if isinstance(m, torch.nn.Linear))
        handle = linear.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
        batches = trainer.data_iterator()
        loss, _ = trainer.accumulate(batches)
        grad_norm, _ = trainer.optimizer_step()
        handle.remove()
        assert seen and set(seen) == {torch.bfloat16}  # computed in bf16 ...
        assert {p.dtype for p in trainer.runner.parameters()} == {torch.float32}  # ... master weights fp32
        assert {p.dtype for p in trainer.ema.model.parameters()} == {torch.float32}
        assert np.isfinite(loss) and np.isfinite(grad_norm)
    finally:
        AcceleratorState._reset_state()


def test_init_from_an_exported_checkpoint_is_strict_about_the_architecture(data, short_run, tmp_path):
    _, out = short_run
    export = layout.export_dir(out, 8)
    trainer = trainer_module.Trainer(h.load_run(data, init_from=str(export)), tmp_path / "finetune")
    want = h.state_dict_of(export)
    got = trainer.runner.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    with pytest.raises(UserError, match="not the 'rdt-170m' architecture"):
        trainer_module.initial_runner(h.load_run(data, init_from=str(export), model="rdt-170m"))
