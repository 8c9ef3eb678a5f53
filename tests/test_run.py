"""`python -m rdt run`: the workflow with dotted overrides (issue 23: LeRobot and openpi users write
`--train.learning_rate=3e-4`; Snakemake only takes `--config 'train={learning_rate: 3e-4}'`)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rdt.errors import UserError
from rdt.run import snakemake_command, split_overrides
from workflow_helpers import copy_repo, env_for


def test_dotted_flags_become_nested_config_and_the_rest_goes_to_snakemake_in_order():
    overrides, rest = split_overrides(
        [
            "--configfile",
            "c.yaml",
            "--train.learning_rate=3e-4",
            "-n",
            "--eval.exec_horizons=[8, 16]",
            "--a.b.c=x",
        ]  # 3e-4: a string in YAML 1.1; the plan converts it
    )
    assert overrides == {"train": {"learning_rate": "3e-4"}, "eval": {"exec_horizons": [8, 16]}, "a": {"b": {"c": "x"}}}
    assert rest == ["--configfile", "c.yaml", "-n"]
    cmd = snakemake_command(["--configfile", "c.yaml", "--train.max_steps=90"])
    assert cmd[1:] == ["--cores", "2", "--configfile", "c.yaml", "--config", "train={max_steps: 90}"]
    assert "--cores" not in snakemake_command(["--profile", "slurm"])  # a cluster run sets no --cores (rdt/cluster)
    with pytest.raises(UserError, match="--train.x.y=1: x is set to a value"):
        split_overrides(["--train.x=1", "--train.x.y=1"])


def test_the_overrides_reach_the_plan(tmp_path):
    work = copy_repo(tmp_path / "repo")
    done = subprocess.run(
        [sys.executable, "-m", "rdt", "run", "--configfile", "config/learning_check.yaml", "-n", "-p",
         "--train.max_steps=300", "--train.checkpointing_period=300", "--eval.exec_horizons=[8]"],
        cwd=work, env=env_for(work), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "--until-step 300" in done.stdout and "--until-step 1500" not in done.stdout
    assert "/h8/eval-" in done.stdout and "/h16/eval-" not in done.stdout  # rdt evaluate --config <eval dir>/...
