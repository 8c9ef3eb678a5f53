"""Installed package versions, for provenance in evaluation summaries and the report."""
from __future__ import annotations

import platform
from importlib import metadata


def package_versions(names: tuple[str, ...]) -> dict[str, str | None]:
    """``{name: version or None if not installed, ..., "python": version}``."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    out["python"] = platform.python_version()
    return out
