"""The evaluation budget of rdt/plan/: which checkpoints are evaluated with how many episodes and horizons, the
cost printed before anything runs (`python -m rdt plan`), and defaults that keep every evaluation of the shipped
small configs. Every test runs in milliseconds (no simulator, no model)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from rdt.cli import main as cli
from rdt.errors import UserError
from rdt.plan import Plan

ROOT = Path(__file__).resolve().parents[1]
TASK = "pick_up_the_alphabet_soup_and_place_it_in_the_basket"
BASE = {
    "demos": {"source": "expert", "suite": "libero_object", "tasks": [TASK], "episodes_per_task": 1},
    "train": {
        "max_steps": 20,
        "model": "tiny",
        "init_from": None,
        "text_encoder": "tiny",
        "vision_encoder": "tiny",
        "effective_batch_size": 4,
        "per_device_batch_size": 2,
        "checkpointing_period": 2,
    },
    "eval": {"exec_horizons": [8, 16, 64], "episodes_per_task": 6, "max_steps": 40},
    "runs": {"default": {}},
}


def make(**eval_keys) -> Plan:
    cfg = copy.deepcopy(BASE)
    cfg["eval"].update(eval_keys)
    return Plan(cfg)


def test_default_budget_evaluates_every_segment_end_fully():
    p = make()
    assert p.eval_steps("default") == list(range(2, 21, 2))
    assert all(
        p.eval_episodes("default", s) == 6 and p.horizons("default", s) == [8, 16, 64] for s in p.eval_steps("default")
    )
    assert p.eval_settings("default", 2) == p.eval_settings("default")  # evaluate rule params unchanged


def test_every_last_and_explicit_steps_union_with_the_final_checkpoint():
    assert make(checkpoints={"every": 3}).eval_steps("default") == [6, 12, 18, 20]
    assert make(checkpoints={"every": None, "last": 2}).eval_steps("default") == [18, 20]
    assert make(checkpoints={"every": None, "steps": [4, 10]}).eval_steps("default") == [4, 10, 20]
    assert make(checkpoints={"every": 5, "last": 1, "steps": [2]}).eval_steps("default") == [2, 10, 20]
    with pytest.raises(UserError, match=r"checkpoints.steps: \[5\] are not segment ends"):
        make(checkpoints={"steps": [5]}).eval_steps("default")


def test_intermediate_checkpoints_get_fewer_episodes_and_horizons():
    p = make(checkpoints={"every": 5}, intermediate_episodes_per_task=2, intermediate_horizons=[8])
    assert p.eval_steps("default") == [10, 20]
    assert (p.eval_episodes("default", 10), p.eval_episodes("default", 20)) == (2, 6)
    assert p.horizons("default", 10) == [8] and p.horizons("default", 20) == [8, 16, 64]
    assert p.eval_settings("default", 10)["episodes_per_task"] == 2
    assert p.summaries("default") == [p.summary_path("default", 10, 8)] + [
        p.summary_path("default", 20, h) for h in (8, 16, 64)
    ]


def test_cost_counts_episodes_steps_and_policy_calls_with_known_answers():
    p = make(
        checkpoints={"every": 5},
        intermediate_episodes_per_task=2,
        intermediate_horizons=[8],
        rates={"sim_step_s": 0.1, "episode_overhead_s": 10.0, "policy_call_s": 0.5, "train_step_s": 3.6},
    )
    c = p.eval_cost("default")
    # step 10: 1 task x 2 episodes at H=8; step 20: 1 x 6 at 8, 16, 64; each episode <= 40 + 10 settle steps
    h8, h64 = c["per_horizon"][8], c["per_horizon"][64]
    assert (h8["jobs"], h8["episodes"], h8["sim_steps_max"], h8["policy_calls_max"]) == (2, 8, 400, 8 * 5)
    assert (h64["jobs"], h64["episodes"], h64["policy_calls_max"]) == (1, 6, 6)
    assert h8["hours_max"] == pytest.approx((8 * 10 + 400 * 0.1 + 40 * 0.5) / 3600, abs=0.01)
    assert c["total"]["episodes"] == 8 + 6 + 6
    assert c["train"]["samples"] == 20 * 4 and c["train"]["hours"] == pytest.approx(0.02)
    assert c["train"]["model_work_ratio_max"] == pytest.approx(5 * c["total"]["policy_calls_max"] / (3 * 80), abs=1e-4)


def test_shipped_small_configs_keep_todays_evaluations():
    for name in ("config.yaml", "learning_check.yaml", "study.yaml"):
        p = Plan(yaml.safe_load((ROOT / "config" / name).read_text()))
        for run in p.runs:
            e = p.runs[run]["eval"]
            # every segment end, or only the final one where a run says so (config.yaml's extra evaluation seeds)
            every = e["checkpoints"]["every"]
            assert p.eval_steps(run) == (p.segment_steps(run) if every else p.segment_steps(run)[-1:]), name
            assert all(
                p.eval_episodes(run, s) == e["episodes_per_task"] and p.horizons(run, s) == e["exec_horizons"]
                for s in p.eval_steps(run)
            ), name


def test_paper_config_keeps_evaluation_below_training(capsys):
    p = Plan(yaml.safe_load((ROOT / "config" / "rdt1b_libero90.yaml").read_text()), check_files=False)
    c = p.eval_cost("rdt1b")
    assert c["steps"] == list(range(10000, 150001, 10000))
    assert c["total"]["episodes"] == 14 * 2 * 90 * 10 + 3 * 90 * 50
    assert c["train"]["model_work_ratio_max"] < 1
    assert cli(["plan", "--configfile", str(ROOT / "config" / "rdt1b_libero90.yaml")]) == 0
    out = capsys.readouterr().out
    assert "15 checkpoint(s) evaluated of 75 segment ends" in out
    assert "38,700" in out and "policy calls (max)" in out and "rates:" in out and "from:" in out
    assert "of training's" in out and "GPU-hours" in out and "CPU hours" not in out


def test_plan_command_names_an_unknown_target(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(BASE))
    assert cli(["plan", "--configfile", str(cfg), "--target", "nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_plan_prints_disk_and_checks_the_profiles_requests(tmp_path, capsys):
    """Issue 21: the paper run's disk (about 1.3 TB per training) and its jobs' CPUs/runtime were stated nowhere,
    and the profile gave training 16 CPUs for 8 x (1 + 8 workers) and evaluation 8 h for up to 16.6 h."""
    paper = str(ROOT / "config" / "rdt1b_libero90.yaml")
    assert cli(["plan", "--configfile", paper, "--profile", str(ROOT / "slurm")]) == 0
    out = capsys.readouterr().out
    disk = "disk: training folder up to 1,326.6 GB = 30 resumable checkpoint(s) x 19.65 GB + 75 export(s) x 9.83 GB"
    assert disk in out
    assert "train job" in out and "64 CPUs, 256 GB, runtime 24 h" in out and "**" not in out  # the profile fits
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "set-threads": {"train": 16, "evaluate": 8},
                "set-resources": {"train": {"runtime": 1440}, "evaluate": {"runtime": 480, "mem_mb": 64000}},
            }
        )
    )
    assert cli(["plan", "--configfile", paper, "--profile", str(old)]) == 0
    out = capsys.readouterr().out
    assert "** 64 CPUs needed, 16 requested **" in out and "** up to 16.6 h needed, runtime 8 h **" in out
    assert cli(["plan", "--configfile", paper, "--profile", str(tmp_path / "none")]) == 2
