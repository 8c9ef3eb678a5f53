"""`make lint` in the test suite (CI runs `make test`): ruff's rules (pyproject.toml [tool.ruff]) and Snakemake's
workflow lint must be clean. The formatting check (`ruff format --check .`) runs in `make lint`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)


def test_ruff_check_is_clean():
    proc = _run(str(BIN / "ruff"), "check", "--output-format", "concise", ".")
    assert proc.returncode == 0, f"ruff check . found problems:\n{proc.stdout}{proc.stderr}"


def test_snakemake_lint_is_clean():
    proc = _run(str(BIN / "snakemake"), "--lint", "--configfile", "config/config.yaml")
    assert proc.returncode == 0, f"snakemake --lint found problems:\n{proc.stdout}{proc.stderr}"
