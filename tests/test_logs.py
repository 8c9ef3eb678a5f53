"""Log lines a person can follow in a batch job: the plain progress lines carry the time, the elapsed time and an
ETA and do not repeat their last line; the project's log records carry the time; robosuite's and LIBERO's import
noise is dropped (issue 15)."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rdt.utils import progress as progress_mod
from rdt.utils.progress import Progress, _duration

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_plain_lines_have_time_elapsed_eta_and_no_repeated_last_line(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress_mod.time, "monotonic", clock)
    out = io.StringIO()
    with Progress(10, "evaluate H=8", unit="ep", every=10.0, stream=out) as p:
        for _ in range(10):
            clock.t += 6.0  # one episode every 6 s: a line at most every 10 s
            p.update(1, success="0/1")
    lines = out.getvalue().splitlines()
    assert all(re.match(STAMP + " evaluate H=8: ", line) for line in lines), lines
    assert re.search(r": 2/10 \(20%\) elapsed 12s, ETA 48s, 0\.167 ep/s success=0/1$", lines[0]), lines[0]
    # the last update printed 10/10 (60 s after the previous line at 8/10): close() does not print it again
    assert lines[-1].split(" ", 2)[2] == "evaluate H=8: 10/10 (100%) elapsed 1m00s, 0.167 ep/s success=0/1"
    assert len(lines) == len(set(line.split(" ", 2)[2] for line in lines)) == 5


def test_final_line_printed_once_when_the_last_update_was_not_shown(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress_mod.time, "monotonic", clock)
    out = io.StringIO()
    with Progress(3, "stats", unit="episode", every=30.0, stream=out) as p:
        for _ in range(3):
            clock.t += 1.0
            p.update(1)
    [line] = out.getvalue().splitlines()
    assert line.endswith("stats: 3/3 (100%) elapsed 3s, 1 episode/s")


def test_a_resumed_run_is_not_credited_with_earlier_steps(monkeypatch):
    """Resumed at step 90 of 100: 5 steps in 50 s is 0.1 step/s and 50 s to go, not 1.9 step/s."""
    clock = Clock()
    monkeypatch.setattr(progress_mod.time, "monotonic", clock)
    out = io.StringIO()
    p = Progress(100, "train", unit="step", every=40.0, initial=90, stream=out)
    for _ in range(5):
        clock.t += 10.0
        p.update(1)
    assert out.getvalue().split(" ", 2)[2].startswith("train: 94/100 (94%) elapsed 40s, ETA 1m00s, 0.1 step/s")


def test_durations():
    assert [_duration(s) for s in (0.4, 42, 185, 7620, 273600)] == ["0s", "42s", "3m05s", "2h07m", "3d04h"]


@pytest.mark.sim
def test_robosuite_and_libero_import_noise_is_dropped():
    code = (
        "from rdt.libero import env, suites\n"
        "env.init_states(suites.select_tasks('libero_object', None)[0])\n"
        "print('done')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout + proc.stderr
    assert "macro file" not in text and "using task orders" not in text, text
    assert proc.stdout.strip() == "done"


def test_command_log_records_carry_the_time(tmp_path):
    """A warning logged under `python -m rdt` has the time, level and logger in front."""
    code = (
        "import logging, sys\nfrom rdt import cli\nimport rdt.data.stats as s\n"
        "s.main = lambda args: logging.getLogger('rdt.test').warning('hello') or 0\n"
        "sys.exit(cli.main(['stats', '--data', 'x.h5', '--out', sys.argv[1]]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "s.json")], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(STAMP + " WARNING rdt.test: hello", proc.stderr.strip()), proc.stderr


LAUNCH_WARNING = "were not passed to `accelerate launch`"


def training_launch_commands(work, config) -> list[str]:
    """The `accelerate launch ...` lines a dry run of the workflow prints for the training jobs of ``config``."""
    from workflow_helpers import snakemake

    proc = snakemake(work, "--dry-run", "--printshellcmds", "--configfile", config)
    return [
        line[line.index("accelerate launch") :].strip()
        for line in proc.stdout.splitlines()
        if "accelerate launch" in line
    ]


def test_training_is_launched_with_every_accelerate_setting(workdir, tmp_path):
    """The training rule gives `accelerate launch` every value it would otherwise default and warn about at the top
    of the log (processes, machines, mixed precision, dynamo): the precision is train.mixed_precision as the trainer
    resolves it (auto: no on CPU, bf16 with GPUs). Launching exactly those options prints no such warning: the
    log's first line is the command's own."""
    from workflow_helpers import variant

    cpu = training_launch_commands(workdir, variant(workdir, "cpu", lambda c: None))
    assert len(cpu) == 2, cpu  # two segments
    for flags in ("--num_machines 1", "--num_processes 1", "--mixed_precision no", "--dynamo_backend no"):
        assert all(f" {flags} " in cmd for cmd in cpu), (flags, cpu)
    gpus = training_launch_commands(
        workdir,
        variant(workdir, "gpus", lambda c: c["train"].update(gpus=2, effective_batch_size=4, per_device_batch_size=2)),
    )
    assert all(" --multi_gpu --num_processes 2 --mixed_precision bf16 " in cmd for cmd in gpus), gpus
    explicit = training_launch_commands(
        workdir, variant(workdir, "fp32", lambda c: c["train"].update(gpus=2, mixed_precision="no"))
    )
    assert all(" --mixed_precision no " in cmd for cmd in explicit), explicit

    # the CPU launch options, as printed, in front of a module that prints one line
    launch = cpu[0].split(" -m rdt ", 1)[0].split()
    assert launch[:2] == ["accelerate", "launch"]
    (tmp_path / "hello_log.py").write_text("print('first line of the job')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "OMP_NUM_THREADS": "1"}
    accelerate = str(Path(sys.executable).parent / "accelerate")
    proc = subprocess.run(
        [accelerate, *launch[1:], "-m", "hello_log"], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert LAUNCH_WARNING not in out, out
    assert out.splitlines()[0] == "first line of the job", out
    # and the same launcher without those options is what warned (the check above would notice a changed text)
    proc = subprocess.run(
        [accelerate, "launch", "--num_processes", "1", "-m", "hello_log"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert LAUNCH_WARNING in proc.stdout + proc.stderr


@pytest.mark.slow
@pytest.mark.sim
def test_a_real_training_log_starts_with_the_projects_lines(tiny_run):
    """The training segments' logs of the tiny workflow run: no accelerate launcher warning, first line ours."""
    logs = sorted((tiny_run / "results" / "logs" / "train").glob("*/step-*.log"))
    assert len(logs) == 2, logs
    for log in logs:
        text = log.read_text()
        assert LAUNCH_WARNING not in text, text[:2000]
        first = text.splitlines()[0]
        assert "accelerate" not in first.lower() and not first.startswith(("The following", "\t")), first
