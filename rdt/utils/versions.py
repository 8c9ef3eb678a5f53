"""Installed package versions and the pipeline's own source commit, for provenance in evaluation summaries, the
report and results bundles."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

#: the packages whose versions evaluation summaries and the report record (the one list; missing ones read None)
PROVENANCE_PACKAGES = (
    "torch",
    "numpy",
    "diffusers",
    "transformers",
    "accelerate",
    "mujoco",
    "hf-libero",
    "robosuite",
    "snakemake",
    "matplotlib",
)


def package_versions(names: tuple[str, ...] = PROVENANCE_PACKAGES) -> dict[str, str | None]:
    """``{name: version or None if not installed, ..., "python": version}``."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    out["python"] = platform.python_version()
    return out


def source_commit() -> dict[str, str | bool | None]:
    """The git commit of the checkout the ``rdt`` package is imported from, and whether it has uncommitted changes
    (``{"commit": None, "dirty": None}`` outside a git checkout, e.g. an installed package)."""
    repo = Path(__file__).resolve().parents[2]

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}
