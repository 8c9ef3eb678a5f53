"""Helpers for the workflow and Slurm tests: a copy of the repository in tmp, a tiny configuration, running
Snakemake there, and the session fixture ``tiny_run`` (registered in conftest.py, so it runs once per session)."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
TASK = "pick_up_the_alphabet_soup_and_place_it_in_the_basket"

# A very small configuration: one expert demo of one task, two training segments of 2 steps, one short episode
# per evaluation at the three default horizons.
TINY = {
    "results": "results",
    "demos": {
        "source": "expert",
        "suite": "libero_object",
        "tasks": [TASK],
        "episodes_per_task": 1,
        "max_attempts": 3,
        "seed": 0,
    },
    "data": {"demos_per_task": None, "min_steps": 10},
    "train": {
        "gpus": 0,
        "max_steps": 4,
        "model": "tiny",
        "init_from": None,
        "text_encoder": "tiny",
        "vision_encoder": "tiny",
        "heldout_episodes": 0,
        "dataloader_num_workers": 0,
        "effective_batch_size": 4,
        "per_device_batch_size": 2,
        "learning_rate": 1e-4,
        "lr_warmup_steps": 2,
        "mixed_precision": "auto",
        "seed": 0,
        "checkpointing_period": 2,
        "checkpoints_total_limit": 3,
        "sample_period": 0,
        "log_period": 1,
    },
    "eval": {
        "exec_horizons": [8, 16, 64],
        "episodes_per_task": 1,
        "max_steps": 12,
        "gpus": 0,
        "weights": "ema",
        "seed": 0,
        "videos_per_task": 1,
    },
    "runs": {"default": {}},
    "evaluate_checkpoints": [],
    "report": {"videos": 2},
}


def copy_repo(dst: Path) -> Path:
    """The parts of the repository the workflow needs (workflow, config, rdt, slurm), without outputs."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for part in ("workflow", "config", "rdt", "slurm"):
        shutil.copytree(REPO / part, dst / part, ignore=ignore)
    return dst


def env_for(workdir: Path) -> dict[str, str]:
    """The copy's rdt package comes first (the Snakefile and `python -m rdt` import it)."""
    return {**os.environ, "PYTHONPATH": str(workdir), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [SNAKEMAKE, "--cores", "2", *args],
        cwd=workdir,
        env=env_for(workdir),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def planned_jobs(workdir: Path, *args: str) -> dict[str, int]:
    """Jobs a dry run schedules, by rule ({} when nothing is to be done)."""
    proc = snakemake(workdir, "--dry-run", *args)
    text = proc.stdout + proc.stderr
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:", 1)[1]
    jobs = {}
    for line in table.splitlines()[3:]:
        m = re.match(r"^(\S+)\s+(\d+)$", line.strip())
        if not m:
            break
        if m.group(1) != "total":
            jobs[m.group(1)] = int(m.group(2))
    return jobs


def variant(workdir: Path, name: str, change) -> str:
    """Path of a config file: TINY with ``change(cfg)`` applied."""
    cfg = copy.deepcopy(TINY)
    change(cfg)
    return str(write_config(workdir / f"{name}.yaml", cfg))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A finished real run of the tiny configuration (one run shared by the workflow and Slurm tests)."""
    work = copy_repo(tmp_path_factory.mktemp("tiny"))
    write_config(work / "config" / "config.yaml", TINY)
    snakemake(work, timeout=1200)
    return work


@pytest.fixture
def workdir(tmp_path) -> Path:
    work = copy_repo(tmp_path / "repo")
    write_config(work / "config" / "config.yaml", TINY)
    return work


def current_summary(run_folder: Path, step: int, horizon: int) -> Path:
    """The summary of (step, horizon) that the run's settings.json lists (each evaluation request's summary is named
    by its identity, summary-<key>.json; rdt.plan.Plan.summary_path)."""
    doc = json.loads((Path(run_folder) / "settings.json").read_text())
    [entry] = [e for e in doc["evaluations"] if (e["step"], e["horizon"]) == (step, horizon)]
    return Path(run_folder) / entry["summary"]


def plan_summary(configfile: dict | Path | None, target: str, step: int, horizon: int) -> str:
    """The summary path (relative to the workflow folder) the plan asks for: a Snakemake target for one evaluation."""
    from rdt.plan import Plan

    cfg = TINY if configfile is None else configfile
    if not isinstance(cfg, dict):
        cfg = yaml.safe_load(Path(cfg).read_text())
    return Plan(cfg, check_files=False).summary_path(target, step, horizon)
