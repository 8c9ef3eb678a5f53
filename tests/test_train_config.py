"""The run-config schema: RDT-1B defaults, strict keys and types, batch arithmetic, LR and EMA schedules."""

from __future__ import annotations

import pytest
import yaml

from rdt import train_config
from rdt.errors import UserError

PATHS = {"data": "data.h5", "lang": "lang.safetensors", "stats": "dataset_stat.json"}


def test_defaults_are_the_rdt1b_recipe():
    cfg = train_config.from_dict(PATHS)
    assert (cfg.effective_batch_size, cfg.per_device_batch_size) == (256, 4)
    assert (cfg.learning_rate, cfg.lr_warmup_steps) == (1e-4, 5000)
    assert (cfg.adam_beta1, cfg.adam_beta2, cfg.weight_decay, cfg.adam_eps) == (0.9, 0.999, 0.01, 1e-8)
    assert cfg.max_grad_norm == 1.0
    assert (cfg.ema_power, cfg.ema_max, cfg.ema_min, cfg.ema_inv_gamma, cfg.ema_update_after_step) == (
        0.75,
        0.9999,
        0.0,
        1.0,
        0,
    )
    assert (cfg.checkpointing_period, cfg.checkpoints_total_limit) == (2000, 30)
    assert (cfg.cond_mask_prob, cfg.state_noise_snr, cfg.image_aug) == (0.1, 40.0, True)
    assert cfg.model == "rdt-1b" and cfg.init_from == "robotics-diffusion-transformer/rdt-1b"
    assert cfg.mixed_precision == "auto"
    assert cfg.resolved_mixed_precision(cuda=True) == "bf16" and cfg.resolved_mixed_precision(cuda=False) == "no"


def test_accumulation_is_derived_from_the_effective_batch():
    cfg = train_config.from_dict(PATHS)
    assert cfg.accumulation(8) == 8
    assert cfg.batch_formula(8) == "effective batch 256 = 4 per device x 8 accumulation x 8 processes"
    assert cfg.accumulation(1) == 64 and cfg.accumulation(64) == 1
    # the seed's failure (4 x 1 x 8 = 32) is impossible to configure by accident: 256 stays 256 on 8 GPUs


@pytest.mark.parametrize("effective,per_device,procs", [(100, 4, 8), (256, 3, 1), (256, 4, 128)])
def test_non_dividing_batch_is_an_error_naming_the_numbers(effective, per_device, procs):
    cfg = train_config.from_dict({**PATHS, "effective_batch_size": effective, "per_device_batch_size": per_device})
    with pytest.raises(UserError) as e:
        cfg.accumulation(procs)
    msg = str(e.value)
    assert f"effective_batch_size={effective}" in msg and f"per_device_batch_size={per_device}" in msg
    assert f"num_processes={procs}" in msg


def test_unknown_key_wrong_type_bad_value_and_missing_path_are_errors():
    with pytest.raises(UserError, match="'learning_rat'"):
        train_config.from_dict({**PATHS, "learning_rat": 1e-4})
    with pytest.raises(UserError, match="'lr_warmup_steps'.*expected int"):
        train_config.from_dict({**PATHS, "lr_warmup_steps": "5000"})
    with pytest.raises(UserError, match="'image_aug'"):
        train_config.from_dict({**PATHS, "image_aug": 1})
    with pytest.raises(UserError, match="'model'.*tiny"):
        train_config.from_dict({**PATHS, "model": "rdt-2b"})
    with pytest.raises(UserError, match="'cond_mask_prob'"):
        train_config.from_dict({**PATHS, "cond_mask_prob": 1.5})
    with pytest.raises(UserError, match="'effective_batch_size'"):
        train_config.from_dict({**PATHS, "effective_batch_size": 0})
    with pytest.raises(UserError, match="'data' is required"):
        train_config.from_dict({"lang": "x", "stats": "y"})
    # ints are accepted where floats are expected
    assert train_config.from_dict({**PATHS, "learning_rate": 1}).learning_rate == 1.0


def test_yaml_round_trip_and_file_errors(tmp_path):
    cfg = train_config.from_dict({**PATHS, "learning_rate": 3e-4, "oversample_transitions": 2})
    path = tmp_path / "run.yaml"
    path.write_text(train_config.dump(cfg))
    assert train_config.load(path) == cfg
    with pytest.raises(UserError, match="not found"):
        train_config.load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("effective_batch_size: [1\n")
    with pytest.raises(UserError, match="not valid YAML"):
        train_config.load(bad)


def test_warmup_is_linear_from_zero_then_constant():
    cfg = train_config.from_dict({**PATHS, "lr_warmup_steps": 4})
    assert [cfg.lr_factor(n) for n in range(1, 7)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert train_config.from_dict({**PATHS, "lr_warmup_steps": 0}).lr_factor(1) == 1.0


def test_ema_decay_follows_rdt_schedule():
    cfg = train_config.from_dict(PATHS)
    assert cfg.ema_decay(1) == 0.0  # first update copies the weights
    assert cfg.ema_decay(1001) == pytest.approx(1 - 1001**-0.75)  # ~0.9944 after 1k steps
    assert cfg.ema_decay(10001) == pytest.approx(0.999, abs=1e-6)
    assert cfg.ema_decay(10**6) == 0.9999  # capped by ema_max
    late = train_config.from_dict({**PATHS, "ema_update_after_step": 10})
    assert late.ema_decay(11) == 0.0 and late.ema_decay(12) > 0.0


def test_fingerprint_tracks_training_settings_and_data_not_bookkeeping(tmp_path):
    data = tmp_path / "data.h5"
    data.write_bytes(b"one")
    paths = {**PATHS, "data": str(data)}
    base = train_config.from_dict(paths)
    assert (
        base.fingerprint()
        == train_config.from_dict({**paths, "checkpointing_period": 7, "dataloader_num_workers": 0}).fingerprint()
    )
    assert base.fingerprint() != train_config.from_dict({**paths, "learning_rate": 2e-4}).fingerprint()
    assert base.fingerprint() != train_config.from_dict({**paths, "effective_batch_size": 128}).fingerprint()
    before = base.fingerprint()
    data.write_bytes(b"two")
    assert base.fingerprint() != before


def test_deepspeed_is_off_by_default_and_only_off_or_zero2():
    assert train_config.from_dict(PATHS).deepspeed == "off"
    assert train_config.from_dict({**PATHS, "deepspeed": "zero2"}).deepspeed == "zero2"
    with pytest.raises(UserError, match="'deepspeed'.*off.*zero2"):
        train_config.from_dict({**PATHS, "deepspeed": "zero3"})
    # YAML reads an unquoted `off` as false: the error says so
    with pytest.raises(UserError, match="'deepspeed' = false.*unquoted off"):
        train_config.from_dict({**PATHS, "deepspeed": False})
    # dump quotes it, so RUN.yaml round-trips
    dumped = yaml.safe_load(train_config.dump(train_config.from_dict(PATHS)))
    assert train_config.from_dict(dumped).deepspeed == "off"


def test_the_train_command_sets_a_passive_omp_wait_policy_before_torch_loads(tmp_path, monkeypatch):
    """Issue 21 item 8: beside one busy process a 2-thread trainer ran 4.1x slower with OpenMP's default (spinning)
    wait policy and 1.4x with PASSIVE (bench/busy_cpu.py); the command sets it unless the environment has one, and
    torch (whose OpenMP runtime reads it once) is not loaded before that point."""
    import argparse
    import os
    import subprocess
    import sys

    from rdt.training import command

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    args = argparse.Namespace(
        config=str(tmp_path / "missing.yaml"), until_step=1, out=str(tmp_path), previous_export=None
    )
    with pytest.raises(UserError):
        command.main(args)
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    with pytest.raises(UserError):
        command.main(args)
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"  # the user's choice wins
    probe = "import sys\nfrom rdt.cli import main\nfrom rdt.training import command\nprint('torch' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )
