"""Stopping a training cleanly: SIGTERM or SIGUSR1 (a cluster's preemption) ends the current optimizer step, a
checkpoint is saved and the command exits with 128 + the signal number; the data workers ignore those signals (they
must finish the step), and a trainer started by ``accelerate launch`` gets SIGTERM when its launcher dies.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class Preempted(Exception):
    """Raised after the checkpoint of a run stopped by a signal has been written."""

    def __init__(self, signum: int, step: int, folder: Path):
        super().__init__(
            f"stopped by signal {signal.Signals(signum).name} at step {step}; resumable checkpoint {folder}"
        )
        self.signum = signum


class StopRequest:
    """What :func:`catch_stop_signals` caught: ``signum`` is None until a stop signal arrives."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def record(self, signum, frame) -> None:
        self.signum = signum


@contextlib.contextmanager
def catch_stop_signals() -> Iterator[StopRequest]:
    """``with catch_stop_signals() as stop:`` a SIGTERM/SIGUSR1 is recorded in ``stop.signum`` instead of ending the
    process, so that the loop can finish its optimizer step and save; the previous handlers come back on exit."""
    stop = StopRequest()
    previous = {s: signal.signal(s, stop.record) for s in STOP_SIGNALS}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def ignore_stop_signals(worker_id: int) -> None:
    """Data workers ignore SIGTERM/SIGUSR1: a cluster signals every process of the job, and the training process
    still needs its workers to finish the current optimizer step before it saves the checkpoint."""
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)


def stop_with_launcher() -> None:
    """Started by ``accelerate launch`` (or torchrun), the trainer asks the kernel for SIGTERM when the launcher
    dies (PR_SET_PDEATHSIG): killing the launcher then stops the training like a preemption (checkpoint, exit
    143) instead of leaving it running unsupervised. A trainer started from a shell is left alone."""
    ppid = os.getppid()
    try:
        parent = Path(f"/proc/{ppid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return
    if not re.search(r"accelerate|torchrun|torch\.distributed\.(run|launch)", parent):
        return
    import ctypes

    PR_SET_PDEATHSIG = 1
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM)) != 0:
        return
    if os.getppid() != ppid:  # the launcher died before the request was made
        os.kill(os.getpid(), signal.SIGTERM)
