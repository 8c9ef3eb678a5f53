"""Issue 21 item 6: a job that runs out of memory died as a bare SIGKILL ("died with <Signals.SIGKILL: 9>"), and the
profile's retries resubmitted the same request. Every rule's command now ends in ``|| python -m rdt.job_exit $? ...``,
which says why in the job's log and on stderr and keeps the exit status; the profile's memory grows with the attempt
(tests/test_cluster_readme.py); a CUDA out-of-memory in training names the setting to lower."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rdt.errors import UserError
from rdt.job_exit import explain

REPO = Path(__file__).resolve().parents[1]


def _job(
    tmp_path: Path, command: str, rule: str = "train", mem_mb: int = 4000
) -> tuple[subprocess.CompletedProcess, str]:
    """Run ``command`` the way the rules do (its output into the log, then the explanation on failure)."""
    log = tmp_path / "job.log"
    shell = (
        f"set -euo pipefail; {command} > {log} 2>&1"
        f" || {sys.executable} -m rdt.job_exit $? --rule {rule} --log {log} --mem-mb {mem_mb}"
    )
    proc = subprocess.run(["bash", "-c", shell], cwd=REPO, capture_output=True, text=True, timeout=120)
    return proc, log.read_text()


def test_a_process_killed_by_sigkill_is_explained_and_keeps_its_status(tmp_path):
    proc, log = _job(tmp_path, f"{sys.executable} -c 'import os, signal; print(\"step 1\"); os.kill(os.getpid(), 9)'")
    assert proc.returncode == 137
    assert "train: killed by SIGKILL (exit status 137)" in proc.stderr and "most likely out of memory" in proc.stderr
    assert "4,000 MB" in proc.stderr and "mem_mb = base x attempt" in proc.stderr
    assert log.startswith("step 1") and "killed by SIGKILL" in log  # appended to the job's own log


def test_a_launcher_that_reports_its_killed_child_is_explained_too(tmp_path):
    # accelerate launch prints the child's death and exits 1
    child = "import sys; print('subprocess.CalledProcessError: ... died with <Signals.SIGKILL: 9>.'); sys.exit(1)"
    proc, _ = _job(tmp_path, f'{sys.executable} -c "{child}"')
    assert proc.returncode == 1 and "killed by SIGKILL (exit status 1)" in proc.stderr


def test_a_real_memory_error_names_host_memory(tmp_path):
    grab = "import resource; resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30)); x = bytearray(4 << 30)"
    proc, log = _job(tmp_path, f"{sys.executable} -c '{grab}'", rule="evaluate", mem_mb=8000)
    assert proc.returncode == 1
    assert "MemoryError" in log and "evaluate: host memory ran out (exit status 1)" in proc.stderr
    assert "set-threads evaluate" in proc.stderr


def test_sigterm_of_a_training_says_it_resumes(tmp_path):
    proc, _ = _job(tmp_path, f"{sys.executable} -c 'import os, signal; os.kill(os.getpid(), signal.SIGTERM)'")
    assert proc.returncode == 143
    assert "stopped by SIGTERM" in proc.stderr and "continues from it" in proc.stderr


def test_any_other_failure_passes_through_silently(tmp_path):
    proc, log = _job(tmp_path, f"{sys.executable} -c 'import sys; print(\"error: bad key\"); sys.exit(3)'")
    assert proc.returncode == 3 and proc.stderr == "" and log == "error: bad key\n"
    ok, _ = _job(tmp_path, "true")
    assert ok.returncode == 0 and ok.stderr == ""


def test_cuda_out_of_memory_in_the_log_does_not_ask_for_host_memory(tmp_path):
    log = tmp_path / "job.log"
    log.write_text("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n")
    said = explain(1, "train", log, 256000)
    assert "the GPU ran out of memory" in said and "per_device_batch_size" in said and "mem_mb = base" not in said


def test_every_rule_that_runs_a_command_explains_its_failures():
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for block in re.split(r"^(?:rule|checkpoint) ", smk.read_text(), flags=re.M)[1:]:
            name = block.split(":", 1)[0].strip()
            if "\n    shell:" not in block:
                continue
            assert f"|| python -m rdt.job_exit $? --rule {name} --log {{log}} --mem-mb {{resources.mem_mb}}" in block, (
                smk.name,
                name,
            )


def test_cuda_out_of_memory_in_training_names_the_setting_to_lower(tmp_path, monkeypatch):
    import torch

    import train_helpers as h
    from rdt.training import command

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.1 GiB total)")

    paths = {"data": "d.h5", "lang": "l.safetensors", "stats": "s.json"}
    run_yaml = h.write_run(tmp_path / "run.yaml", paths, per_device_batch_size=4, effective_batch_size=256)
    monkeypatch.setattr(command, "train_segment", out_of_memory)
    args = argparse.Namespace(config=str(run_yaml), until_step=1, out=str(tmp_path / "out"), previous_export=None)
    with pytest.raises(UserError, match=r"CUDA out of memory at train.per_device_batch_size 4 \(effective batch 256\)"):
        command.main(args)
