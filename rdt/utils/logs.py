"""Log lines a person can follow in a batch job (a Slurm log, a Snakemake rule's log file).

Every line the project writes starts with the local time (``2026-12-01 15:40:06``): the trainer's and the evaluator's
lines, the plain progress lines (rdt/utils/progress.py) and Python logging records (:func:`setup_logging`).
Known third-party noise is dropped (:func:`quiet_third_party`): robosuite's three "No private macro file found"
warnings at import and LIBERO's "[info] using task orders [...]" print. Error lines (``error: ...``) stay as they are.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import time
from collections.abc import Iterator

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: the beginnings of robosuite's import-time warnings about its optional private macro file
ROBOSUITE_NOISE = (
    "No private macro file found",
    "It is recommended to use a private macro file",
    "To setup, run: python",
)


def now() -> str:
    """The local time as it starts each log line."""
    return time.strftime(TIME_FORMAT)


def setup_logging(level: int = logging.INFO) -> None:
    """Python logging to stderr with a timestamp, level and logger name on each record (once per process)."""
    logging.basicConfig(level=level, format=LOG_FORMAT, datefmt=TIME_FORMAT, stream=sys.stderr)


class _DropMessages(logging.Filter):
    def __init__(self, starts: tuple[str, ...]):
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.starts)


_ROBOSUITE_FILTER = _DropMessages(ROBOSUITE_NOISE)


def quiet_third_party() -> None:
    """Drop robosuite's macro-file warnings (call before robosuite is imported; the logger is robosuite's own)."""
    logger = logging.getLogger("robosuite_logs")
    if _ROBOSUITE_FILTER not in logger.filters:
        logger.addFilter(_ROBOSUITE_FILTER)


@contextlib.contextmanager
def swallow_stdout() -> Iterator[None]:
    """Run a third-party call whose prints to stdout are noise (LIBERO's benchmark constructor)."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield
