"""Experiment trackers (train.report_to, issue 15): off by default and never required; a tracker that is not
installed is an error when the configuration is read; W&B (offline here) gets the same rows as metrics.csv; the
key is not part of the training identity."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

import train_helpers as h
from rdt import train_config
from rdt.errors import UserError
from rdt.training import command, run_folder

REPO = Path(__file__).resolve().parents[1]
PATHS = {"data": "d.h5", "lang": "l.safetensors", "stats": "s.json"}


def test_default_is_none_and_the_key_is_not_in_the_identity():
    cfg = train_config.from_dict(PATHS)
    assert cfg.report_to == "none"
    assert "report_to" in train_config.NOT_IN_FINGERPRINT
    assert train_config.from_dict({**PATHS, "report_to": "tensorboard"}).fingerprint() == cfg.fingerprint()
    with pytest.raises(UserError, match="report_to.*expected one of none, tensorboard, wandb"):
        train_config.from_dict({**PATHS, "report_to": "mlflow"})


def test_a_tracker_that_is_not_installed_is_a_clear_error_at_config_time(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(UserError) as info:
        train_config.from_dict({**PATHS, "report_to": "wandb"}, source="config runs.default.train")
    assert str(info.value).startswith(
        "config runs.default.train: key 'report_to' = 'wandb', but the wandb package is not installed"
    )
    assert "pip install wandb" in str(info.value) and "report_to: none" in str(info.value)
    train_config.from_dict({**PATHS, "report_to": "none"})  # never required


def test_schema_and_readme_document_the_key():
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    assert schema["properties"]["train"]["properties"]["report_to"]["enum"] == list(train_config.REPORT_TO)
    assert "`train.report_to`" in (REPO / "config" / "README.md").read_text()


def test_wandb_offline_run_gets_the_training_rows(tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "wandb").mkdir()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = h.make_data(tmp_path / "data")
        cfg = h.load_run(data, report_to="wandb", checkpointing_period=3, run="tracked")
        command.train_segment(cfg, 3, tmp_path / "run")
    finally:
        torch.set_num_threads(threads)
    assert [int(r["step"]) for r in run_folder.read_metrics(tmp_path / "run")] == [1, 2, 3]
    [run_dir] = (tmp_path / "wandb" / "wandb").glob("offline-run-*")
    assert run_dir.name.endswith(f"tracked-{cfg.fingerprint()}")
    [records] = run_dir.glob("*.wandb")  # the offline run's record file (protobuf records)
    raw = records.read_bytes()
    for key in ("loss", "lr", "grad_norm", "samples_per_s"):
        assert raw.count(f"train/{key}".encode()) >= 3, key  # one history row per optimizer step
    assert b"train/sample_mse" not in raw  # empty cells (sample_period 0) are not logged


def test_switching_the_tracker_keeps_the_training_folder():
    """Turning W&B on for an existing training continues it: the workflow's training key leaves report_to out."""
    import copy

    from rdt.plan import Plan

    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    keys = set()
    for tracker in ("none", "tensorboard", "wandb"):
        c = copy.deepcopy(cfg)
        c["train"]["report_to"] = tracker
        keys.add(Plan(c).train_key("default"))
    assert len(keys) == 1
