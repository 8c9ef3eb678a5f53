"""Reading small structured files (JSON, YAML) with the project's clear errors: a missing file or one that does
not parse is a UserError naming the file. :func:`read_json` is the one JSON file reader (callers that may go
without a file catch its UserError)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rdt.errors import UserError


def _read(
    path: str | os.PathLike, parse: Callable[[str], Any], errors: type[Exception] | tuple, kind: str, missing: str
) -> Any:
    path = Path(path)
    try:
        return parse(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: {missing}") from None
    except OSError as e:  # a folder, no permission, an I/O error
        raise UserError(f"{path}: cannot be read ({e.strerror or e})") from None
    except errors as e:
        raise UserError(f"{path}: not valid {kind} ({e})") from None


def read_json(path: str | os.PathLike, missing: str = "not found") -> Any:
    """The parsed JSON of ``path``; ``missing`` completes the message when the file does not exist."""
    return _read(path, json.loads, json.JSONDecodeError, "JSON", missing)


def read_yaml(path: str | os.PathLike, missing: str = "not found") -> Any:
    """The parsed YAML of ``path`` (``yaml.safe_load``); ``missing`` as for :func:`read_json`. A syntax error
    names the file, line and column: ``FILE, line L, column C: not valid YAML (PROBLEM)``."""
    import yaml

    try:
        return _read(path, yaml.safe_load, (), "YAML", missing)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = "; ".join(x for x in (e.context, e.problem) if x)
        raise UserError(f"{path}{where}: not valid YAML ({what})") from None
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML ({e})") from None


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, name: str, doing: str) -> Iterator[None]:
    """Hold ``folder/name`` (an exclusive flock, released by the kernel however the process ends) while ``doing``
    (e.g. "training into this run folder"); a second holder gets a UserError naming the first (pid, host, since)."""
    import fcntl
    import socket
    import time

    path = Path(folder) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown process"
            raise UserError(
                f"{folder}: another process is {doing} ({holder}; lock {path}); wait for it to finish, stop it, "
                "or use another --out"
            ) from None
        os.ftruncate(fd, 0)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {stamp}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
