"""The run folder of a training (``rdt train --out DIR``): what it holds, under which names, and who may write it.

    DIR/checkpoints/checkpoint-<step>/   resumable state (trainer_state.json marks a complete one)
    DIR/export/step-<step>/              evaluation checkpoint (never pruned; the name is rdt.layout's)
    DIR/metrics.csv                      one row per optimizer step (:class:`MetricsLog` writes, :func:`read_metrics`
                                         reads, for the trainer, the tests and the report alike)
    DIR/metrics.history.csv              rows set aside when a segment restarts below them (never deleted)
    DIR/.train.lock                      held by the trainer that writes the folder

Only the standard library and rdt's small helpers: the report reads metrics without importing torch.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rdt import layout
from rdt.errors import UserError
from rdt.libero.mapping import ACTION_SLOTS
from rdt.utils.atomic import write_text
from rdt.utils.files import folder_lock, read_json

CHECKPOINTS, METRICS = "checkpoints", "metrics.csv"
METRICS_HISTORY = "metrics.history.csv"
LOCK_FILE = ".train.lock"
STATE_FILE, OPTIMIZER_FILE, SCHEDULER_FILE, RNG_FILE = (
    "trainer_state.json",
    "optimizer.pt",
    "scheduler.pt",
    "rng_states.pt",
)
DEEPSPEED_STATE = "deepspeed"  # checkpoint subfolder written by accelerate's save_state under deepspeed: zero2
#: the action slots of the LIBERO mapping, whose held-out sample error is logged (the mean and per slot)
SAMPLE_MSE_SLOTS = tuple(f"sample_mse_{slot}" for slot in ACTION_SLOTS)
METRIC_COLUMNS = (
    "step",
    "loss",
    "lr",
    "grad_norm",
    "samples",
    "samples_per_s",
    "step_time_s",
    "sample_mse",
) + SAMPLE_MSE_SLOTS
REQUIRED_METRIC_COLUMNS = ("step", "loss", "lr")


# ================================================================================================ names
def checkpoint_dir(out: str | Path, step: int) -> Path:
    return Path(out) / CHECKPOINTS / f"checkpoint-{step}"


# ================================================================================================ checkpoints
def list_checkpoints(out: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (those with a trainer state file) as (step, folder), oldest first."""
    found = []
    for folder in (Path(out) / CHECKPOINTS).glob("checkpoint-*"):
        suffix = folder.name.split("-", 1)[1]
        if suffix.isdigit() and (folder / STATE_FILE).is_file():
            found.append((int(suffix), folder))
    return sorted(found)


def read_trainer_state(folder: str | Path) -> dict[str, Any]:
    return read_json(Path(folder) / STATE_FILE, "missing (not a complete checkpoint)")


def matching_checkpoints(out: str | Path, fingerprint: str) -> tuple[list[tuple[int, Path]], list[Path]]:
    """(checkpoints trained with settings ``fingerprint``, stale ones trained with other settings)."""
    match, stale = [], []
    for step, folder in list_checkpoints(out):
        (match if read_trainer_state(folder).get("fingerprint") == fingerprint else stale).append((step, folder))
    return match, [f for _, f in stale]


def find_resume(out: str | Path, fingerprint: str, until_step: int) -> tuple[int, Path] | None:
    """The newest checkpoint with matching settings and step <= ``until_step``; None = start from scratch."""
    match, _ = matching_checkpoints(out, fingerprint)
    usable = [(s, f) for s, f in match if s <= until_step]
    return usable[-1] if usable else None


def prune_checkpoints(out: str | Path, fingerprint: str, limit: int, written: int | None = None) -> list[Path]:
    """Delete the oldest matching checkpoints beyond ``limit`` and return the deleted folders.

    ``written`` is the step of the checkpoint just saved: it is always kept, and only matching checkpoints of
    earlier steps are candidates, so that ``limit`` - 1 of those stay next to it. Checkpoints of later steps (left
    by a segment that went further, e.g. before the segment boundaries were re-planned) are never deleted by a
    segment that ends below them: they hold training progress this segment did not reproduce. Without ``written``,
    the newest ``limit`` are kept. Stale checkpoints (other settings) and exports are left alone."""
    match, _ = matching_checkpoints(out, fingerprint)
    limit = max(limit, 1)
    if written is None:
        doomed = [f for _, f in match[:-limit]]
    else:
        earlier = [f for s, f in match if s < written]
        doomed = earlier[: max(len(earlier) - (limit - 1), 0)]
    for folder in doomed:
        shutil.rmtree(folder)
    return doomed


# ================================================================================================ lock
@contextlib.contextmanager
def run_lock(out: str | Path) -> Iterator[None]:
    """Hold DIR/.train.lock while training into run folder ``out`` (rdt.utils.files.folder_lock); a second trainer on
    the same folder gets a UserError naming the holder. Only the main process of a launch (RANK 0) takes it."""
    if int(os.environ.get("RANK", "0")) != 0:
        yield
        return
    with folder_lock(out, LOCK_FILE, "training into this run folder"):
        yield


# ================================================================================================ metrics
class MetricsLog:
    """DIR/metrics.csv, one row per optimizer step, flushed per row. TensorBoard scalars when it is installed.

    A segment that starts at ``start_step`` below rows already in the file (a run killed after its last
    checkpoint, or a segment ending below checkpoints of a run that went further) loses no row: the rows after
    ``start_step`` are first appended to DIR/metrics.history.csv (with the time they were set aside), then
    removed from metrics.csv; on :meth:`close` those of them beyond the last step this segment wrote and up to
    ``keep_until`` (the newest checkpoint of the same settings, whose trajectory wrote them) go back into
    metrics.csv, so a segment that retrains steps 1-10 of a finished 30-step run leaves 30 rows."""

    def __init__(self, out: str | Path, start_step: int, keep_until: int = 0, tracker=None):
        self.tracker = tracker  # train.report_to: wandb -> accelerator.log(values, step=step)
        self.path = Path(out) / METRICS
        self.history = Path(out) / METRICS_HISTORY
        self.keep_until, self.last_step = int(keep_until), int(start_step)
        fields, rows = _read_rows(self.path)
        kept = [r for r in rows if int(r["step"]) <= start_step]
        self.set_aside = [r for r in rows if int(r["step"]) > start_step]
        if self.set_aside:
            self._append_history(fields or list(METRIC_COLUMNS), self.set_aside)
        write_text(self.path, _metrics_text(kept))
        self.file = open(self.path, "a", newline="")
        self.writer = csv.writer(self.file)
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(Path(out) / layout.TENSORBOARD), purge_step=start_step + 1)
        except ImportError:
            pass

    def _append_history(self, fields: list[str], rows: list[dict[str, str]]) -> None:
        """Append ``rows`` with their own columns (those of the metrics.csv they came from) and the time, fsynced;
        rows whose columns differ from an existing history file's go to metrics.history.<k>.csv."""
        header = [*fields, "set_aside_time"]
        path, k = self.history, 1
        while path.is_file() and path.open(newline="").readline().rstrip("\r\n") != ",".join(header):
            k += 1
            path = self.history.with_name(f"{self.history.stem}.{k}.csv")
        new_file = not path.is_file()
        now = f"{time.time():.0f}"
        with open(path, "a", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            if new_file:
                w.writerow(header)
            w.writerows([[r.get(c) or "" for c in fields] + [now] for r in rows])
            f.flush()
            os.fsync(f.fileno())

    def write(self, row: dict[str, Any]) -> None:
        try:
            self.writer.writerow([_csv_value(row.get(c)) for c in METRIC_COLUMNS])
            self.file.flush()
        except OSError as e:
            raise OSError(e.errno, e.strerror, str(self.path)) from e
        self.last_step = int(row["step"])
        values = {f"train/{k}": v for k, v in row.items() if k != "step" and v is not None}
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(k, v, row["step"])
        if self.tracker is not None:
            self.tracker(values, step=row["step"])

    def close(self) -> None:
        self.file.close()
        back = [r for r in self.set_aside if self.last_step < int(r["step"]) <= self.keep_until]
        if back:  # rows of the trajectory that reached checkpoint-<keep_until>, beyond what this one wrote
            write_text(self.path, _metrics_text(_read_rows(self.path)[1] + back))
        if self.tb is not None:
            self.tb.close()


def _read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """(columns, rows with a step) of a metrics file as text; no file: no columns, no rows."""
    if not path.is_file():
        return [], []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = [r for r in reader if (r.get("step") or "").isdigit()]
        return list(reader.fieldnames or []), rows


def _metrics_text(rows: list[dict[str, str]]) -> str:
    lines = [",".join(METRIC_COLUMNS)] + [",".join(r.get(c) or "" for c in METRIC_COLUMNS) for r in rows]
    return "\n".join(lines) + "\n"


def _csv_value(v: Any) -> str:
    if v is None:
        return ""
    return f"{v:.8g}" if isinstance(v, float) else str(v)


def read_metrics(path: str | Path) -> list[dict[str, float]]:
    """Rows of a metrics.csv (``path``, or ``path``/metrics.csv for a run folder) as floats; empty cells are left
    out of a row. No file: no rows. A file without the columns step, loss and lr is a UserError naming them."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS
    if not path.is_file():
        return []
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    if len(lines) > 1 and not text.endswith("\n"):  # a row cut by a kill mid-write: not data
        logging.getLogger("rdt.metrics").warning(
            "%s: the last row is incomplete (%r, a write cut off); it is left out", path, lines[-1][:60]
        )
        lines = lines[:-1]
    reader = csv.DictReader(lines)
    missing = [c for c in REQUIRED_METRIC_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise UserError(f"{path}: missing column(s) {missing}; expected columns {', '.join(METRIC_COLUMNS)}")
    return [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in reader]
