"""Checks of a cluster run's resource requests, made by the workflow before any job is submitted.

Snakemake caps every job's threads at ``--cores``, for Slurm jobs too (``--cores`` is then the most CPUs requested at
once): ``--cores all`` on a 2-core login node would submit every training and evaluation job with 2 CPUs and
evaluation with 2 simulators, silently. The SLURM profile therefore sets ``cores`` itself, and the workflow refuses
a ``--cores`` below what ``set-threads`` asks for (on any executor: the Snakefile is read before the executor is
known, and an explicit thread count that cannot be given is a contradiction locally too).
"""

from __future__ import annotations

from collections.abc import Mapping


def capped_threads_error(cores: int | None, threads: Mapping[str, int], max_threads: int | None = None) -> str | None:
    """The error to raise when ``--cores`` would shrink the threads the profile asks for (None when it does not).
    ``threads``: rule -> threads from ``set-threads``; ``max_threads`` (``--max-threads``) caps them on purpose."""
    if cores is None or max_threads is not None:
        return None
    capped = {rule: n for rule, n in sorted(threads.items()) if n > cores}
    if not capped:
        return None
    asked = ", ".join(f"{rule}: {n}" for rule, n in capped.items())
    return (
        f"--cores {cores} caps the threads of every cluster job at {cores}, but the profile's set-threads asks for "
        f"{asked} (Slurm would get --cpus-per-task={cores}, and evaluation as many simulators). With --profile slurm "
        "leave --cores out (the profile sets cores, the most CPUs requested at once); to cap the jobs on purpose, "
        "give --max-threads N."
    )
