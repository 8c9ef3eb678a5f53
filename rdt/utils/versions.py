"""Installed package versions, for provenance in evaluation summaries and the report."""

from __future__ import annotations

import platform
from importlib import metadata

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
