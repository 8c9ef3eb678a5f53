"""Experiment trackers (train.report_to, issue 15): off by default and never required; a tracker that is not
installed is an error when the configuration is read; W&B (offline here) gets the same rows as metrics.csv; the
key is not part of the training identity. Evaluation (issue 23): with report_to wandb each horizon's success reaches
W&B in the training's group, against the checkpoint step."""

from __future__ import annotations

import importlib.util
import json
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
        "config runs.default.train: key 'report_to' = 'wandb': the wandb package is not installed"
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


# ------------------------------------------------------------------------------------------------ evaluation (issue 23)
def _wandb_records(path: Path):
    """The records of an offline run's .wandb file (W&B's LevelDB-style log: a 7-byte header, 32 KiB blocks of
    chunks with a 7-byte header each: crc32, length, type 1 full / 2 first / 3 middle / 4 last), parsed."""
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    block, data = 32768, path.read_bytes()
    assert data[:4] == b":W&B"
    pos, buf = 7, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:  # the rest of a block is padding
            pos += left
            continue
        buf += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(buf)
            buf = b""
            yield record


def test_evaluation_success_goes_to_wandb_in_the_trainings_group(tmp_path, monkeypatch):
    """Each horizon's success rate and episode count reach W&B as each evaluation job finishes: one W&B run per job
    (jobs run in parallel; a W&B run takes one writer), in the training's group, against the checkpoint step: jobs
    finish out of order."""
    from rdt.evaluation import command as ev
    from rdt.evaluation import config as ec
    from rdt.evaluation import trackers

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_PROJECT", "rdt-test")
    pipeline = {"run": "d978ed97df44", "identity": "0123456789abcdef"}
    finished = [(200, 8, 3, 4, 0), (100, 8, 1, 4, 0), (100, 16, 0, 4, 4)]  # the last: every episode an error
    for step, horizon, successes, episodes, errors in finished:  # one evaluation job each
        cfg = ec.from_dict({"checkpoint": "ck", "exec_horizons": [horizon], "report_to": "wandb", "run": "main"})
        tracker = ev._wandb(cfg, {**pipeline, "step": step})
        valid = episodes - errors
        rate = successes / valid if valid else None
        tracker.log(
            {
                "step": step,
                "horizon": horizon,
                "overall": {"success_rate": rate, "episodes": episodes, "errors": errors},
            }
        )
        tracker.finish()
    import wandb

    wandb.teardown()  # the service writes the last run's records (as at the command's exit)
    group = trackers.training_run_id(pipeline["run"], pipeline["identity"])
    ids = {trackers.wandb_run_id("main", group, step, [h]) for step, h, *_ in finished}
    files = sorted((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(ids) == 3 and len(files) == 3  # one W&B run per job
    rows, runs, axes = [], set(), set()
    for f in files:
        for r in _wandb_records(f):
            kind = r.WhichOneof("record_type")
            if kind == "run":
                runs.add((r.run.run_id, r.run.run_group, r.run.job_type, r.run.project, r.run.display_name))
            elif kind == "metric":
                axes.add((r.metric.glob_name or r.metric.name, r.metric.step_metric))
            elif kind == "history":
                item = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
                rows.append({k: v for k, v in item.items() if not k.startswith("_")})
    assert {r[0] for r in runs} == ids
    assert {r[1:4] for r in runs} == {("d978ed97df44-0123456789abcdef", "evaluate", "rdt-test")}
    assert {r[4] for r in runs} == {"eval-main-step-100", "eval-main-step-200"}
    assert {("success/*", "checkpoint_step"), ("episodes/*", "checkpoint_step")} <= axes
    assert sorted(rows, key=lambda r: sorted(r.items())) == sorted(
        [
            {"checkpoint_step": 200, "success/H8": 0.75, "episodes/H8": 4},
            {"checkpoint_step": 100, "success/H8": 0.25, "episodes/H8": 4},
            {"checkpoint_step": 100, "episodes/H16": 0},  # no valid episode: no success rate
        ],
        key=lambda r: sorted(r.items()),
    )
    other = trackers.wandb_run_id("main", trackers.training_run_id("d978ed97df44", "fedcba9876543210"), 100, [8])
    assert other not in ids and trackers.wandb_run_id("seed1", group, 100, [8]) not in ids  # per run and training
    assert trackers.wandb_run_id("main", group, 100, [8]) in ids  # a rerun of a job continues its W&B run


def test_the_evaluation_group_is_the_trainings_wandb_run_id(tmp_path):
    """rdt.training.backend.start_tracker names the training's W&B run; evaluation derives the same id from the
    export's pipeline.json (run and identity) and uses it as the group."""
    from rdt.evaluation.trackers import training_group
    from rdt.training.backend import start_tracker

    class Accelerator:
        project_dir = str(tmp_path)

        def init_trackers(self, project, config=None, init_kwargs=None):
            self.kwargs = init_kwargs["wandb"]

        def log(self, row, step=None):
            pass

    accelerator = Accelerator()
    cfg = train_config.from_dict({**PATHS, "report_to": "wandb", "run": "k" * 40})
    start_tracker(accelerator, cfg, "f" * 40)
    assert training_group({"run": cfg.run, "identity": "f" * 40}) == accelerator.kwargs["id"]
    assert len(accelerator.kwargs["id"]) == 64
    assert training_group({"run": "x"}) is None  # a checkpoint made elsewhere: no group


def test_wandb_for_evaluation_is_optional_and_a_clear_error_only_when_asked(monkeypatch):
    import sys

    from rdt.evaluation import config as ec
    from rdt.evaluation.trackers import WandbLog

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    base = {"checkpoint": "ck", "exec_horizons": [8]}
    assert ec.from_dict(base).report_to == "none"
    with pytest.raises(UserError, match=r"e.yaml: key 'report_to' \(--report-to\) wandb: the wandb package is not"):
        ec.from_dict({**base, "report_to": "wandb"}, source="e.yaml")
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb fails
    with pytest.raises(UserError, match="needs the wandb package, which is not installed: `pip install wandb`"):
        WandbLog(None, None, "main", 100, [8])


def test_the_plan_sends_success_to_wandb_when_the_training_reports_there():
    """The evaluation document says report_to wandb exactly when the run's train.report_to is wandb; the evaluation
    key (the summary's name) does not change with it."""
    import copy

    from rdt.plan import Plan

    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    docs, keys = {}, set()
    for tracker in ("none", "tensorboard", "wandb"):
        c = copy.deepcopy(cfg)
        c["train"]["report_to"] = tracker
        plan = Plan(c)
        step = plan.eval_steps("default")[-1]
        docs[tracker] = plan.eval_config("default", step, 8)
        keys.add(plan.eval_key("default", step, 8))
    assert [docs[t]["report_to"] for t in ("none", "tensorboard", "wandb")] == ["none", "none", "wandb"]
    assert docs["wandb"]["run"] == "default" and docs["wandb"]["tensorboard"].endswith("/tensorboard/eval-default")
    assert len(keys) == 1
