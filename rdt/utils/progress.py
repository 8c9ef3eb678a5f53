"""Progress display: a tqdm bar in a terminal, plain periodic lines otherwise (batch jobs, SLURM logs)."""
from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


class Progress:
    """``with Progress(total, "train") as p: p.update(1, loss=0.3)``.

    In a TTY this is a tqdm bar; otherwise a line ``desc: n/total (pct) rate/s key=value`` is printed to stderr
    at most every ``every`` seconds, and once at the end.
    """

    def __init__(self, total: int | None, desc: str, unit: str = "it", every: float = 30.0, initial: int = 0,
                 stream=None):
        self.total, self.desc, self.unit, self.every = total, desc, unit, every
        self.n = initial
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
        total = f"/{self.total}" if self.total else ""
        pct = f" ({100.0 * self.n / self.total:.0f}%)" if self.total else ""
        extras = " ".join(f"{k}={_fmt(v)}" for k, v in self.postfix.items())
        print(f"{self.desc}: {self.n}{total}{pct} {self.n / elapsed:.2f} {self.unit}/s {extras}".rstrip(),
              file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        else:
            self._line()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _fmt(v: object) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def track(items: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it") -> Iterator[T]:
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(total, desc, unit) as p:
        for item in items:
            yield item
            p.update(1)
