"""Progress display: a tqdm bar in a terminal, plain periodic lines otherwise (batch jobs, SLURM logs)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rdt.utils.logs import now

T = TypeVar("T")


class Progress:
    """``with Progress(total, "train") as p: p.update(1, loss=0.3)``.

    In a TTY this is a tqdm bar; otherwise a line
    ``2026-12-01 15:40:06 desc: n/total (pct) elapsed 1m02s, ETA 3m10s, rate unit/s key=value`` is printed to stderr
    at most every ``every`` seconds, and once at the end unless the last line already shows the final count. The
    rate and the ETA count only this process's work (a resumed run starting at ``initial`` is not credited with
    the steps done before it).
    """

    def __init__(
        self, total: int | None, desc: str, unit: str = "it", every: float = 30.0, initial: int = 0, stream=None
    ):
        self.total, self.desc, self.unit, self.every = total, desc, unit, every
        self.n = self.initial = initial
        self._printed: int | None = None  # the count shown by the last plain line
        self.stream = stream or sys.stderr
        self.postfix: dict[str, object] = {}
        self._start = time.monotonic()
        self._last = self._start
        self._bar = None
        if hasattr(self.stream, "isatty") and self.stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, initial=initial, file=self.stream, dynamic_ncols=True)

    def update(self, n: int = 1, **postfix: object) -> None:
        self.n += n
        self.postfix.update(postfix)
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix({k: _fmt(v) for k, v in self.postfix.items()}, refresh=False)
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            self._line()

    def _line(self) -> None:
        elapsed = max(time.monotonic() - self._start, 1e-9)
        rate = (self.n - self.initial) / elapsed
        total = f"/{self.total}" if self.total else ""
        pct = f" ({100.0 * self.n / self.total:.0f}%)" if self.total else ""
        eta = ""
        if self.total and self.n < self.total:
            eta = f", ETA {_duration((self.total - self.n) / rate)}" if rate > 0 else ", ETA ?"
        extras = " ".join(f"{k}={_fmt(v)}" for k, v in self.postfix.items())
        print(
            f"{now()} {self.desc}: {self.n}{total}{pct} elapsed {_duration(elapsed)}{eta}, {rate:.3g} "
            f"{self.unit}/s {extras}".rstrip(),
            file=self.stream,
            flush=True,
        )
        self._printed = self.n

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._printed != self.n:  # the final count, unless the last periodic line already showed it
            self._line()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``, ``3d04h``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _fmt(v: object) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def track(items: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it") -> Iterator[T]:
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(total, desc, unit) as p:
        for item in items:
            yield item
            p.update(1)
