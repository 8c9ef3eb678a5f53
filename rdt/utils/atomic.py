"""Atomic outputs: write to a temporary name next to the target, then rename.

An interrupted job therefore never leaves a file (or folder) that looks finished.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _tmp_name(target: Path, suffix: str) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are shared like normally created files
    os.close(fd)
    return Path(name)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary file path (ending in ``suffix``, for writers that choose the format by extension); on
    success it is fsynced and renamed to ``target``, on error removed."""
    target = Path(target)
    tmp = _tmp_name(target, suffix)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as e:
        try:
            _name_full_disk(target, tmp, e)  # while the partial file still fills the disk
        finally:
            tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces ``target`` (an existing one is removed first)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    tmp.chmod(0o777 & ~_umask())
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException as e:
        try:
            _name_full_disk(target, tmp, e)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        raise


def _name_full_disk(target: Path, tmp: Path, e: BaseException) -> None:
    """A writer's failure on a full, read-only or forbidden disk (whatever its words: torch.save's "unexpected
    pos", safetensors' "os error 28", h5py's "errno = 28") becomes OSError naming ``target`` (not the temporary
    name); a failure in other words while the disk is full becomes OSError(ENOSPC). Bad input (UserError),
    interrupts and errors that already name another path are left as they are."""
    from rdt.errors import UserError

    if not isinstance(e, Exception) or isinstance(e, UserError):
        return
    if isinstance(e, OSError) and e.filename and not str(e.filename).startswith(str(tmp)):
        if e.errno in DISK_ERRORS:
            return
    code = _disk_errno(e)
    if code is not None:
        raise OSError(code, DISK_ERRORS[code], str(target)) from e
    raise_if_disk_full(target, e)


def write_text(target: str | os.PathLike, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def write_json(target: str | os.PathLike, obj: Any) -> None:
    write_text(target, json.dumps(obj, indent=2, sort_keys=False) + "\n")


# ------------------------------------------------------------------------------------------------ disk faults
#: errno -> the cause as the one error line states it
DISK_ERRORS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}
#: an output folder with less free space than this is reported as full before any work starts
MIN_FREE_BYTES = 1 << 20


def disk_error_line(e: BaseException) -> str | None:
    """``<path>: <cause>`` for an error of a full, read-only or forbidden location (None for other errors): an
    OSError with such an errno, or an error whose message carries it (HDF5: ``errno = 28``, safetensors:
    ``os error 28``), or one whose cause or context is such an error."""
    for x in _chain(e):
        code = _disk_errno(x)
        if code is None:
            continue
        cause, detail = DISK_ERRORS[code], (x.strerror if isinstance(x, OSError) else None) or ""
        if detail and detail.lower() != os.strerror(code).lower():
            cause = detail if detail.lower().startswith(cause) else f"{cause} ({detail})"
        where = x.filename if isinstance(x, OSError) and x.filename is not None else None
        if where is None:
            import re

            name = re.search(r"name = '([^']*)'", str(x))
            where = name.group(1) if name else "(output)"
        return f"{where}: {cause}"
    return None


def _chain(e: BaseException | None) -> Iterator[BaseException]:
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def _disk_errno(e: BaseException) -> int | None:
    """The disk errno of ``e`` itself: its errno, or one written in its message."""
    if isinstance(e, OSError) and e.errno is not None:
        return e.errno if e.errno in DISK_ERRORS else None
    import re

    for m in re.finditer(r"(?:errno = |os error |\[Errno )(\d+)", str(e)):
        if int(m.group(1)) in DISK_ERRORS:
            return int(m.group(1))
    return None


def check_writable(folder: str | os.PathLike, min_free: int = MIN_FREE_BYTES) -> None:
    """Fail early (before models or data are loaded) when outputs cannot be written into ``folder``: create it,
    create and remove a probe file, and require ``min_free`` bytes of free space (folders it created are removed
    again). Raises OSError with the errno of the cause (ENOSPC, EROFS, EACCES, ...) and the folder as its
    filename."""
    folder = Path(folder).absolute()
    created = [p for p in (folder, *folder.parents) if not p.exists()]  # removed again after the check
    try:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OSError(e.errno, e.strerror, str(e.filename or folder)) from None
        try:
            fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=folder)
            try:
                os.write(fd, b"\0" * 4096)
                os.fsync(fd)
            finally:
                os.close(fd)
                os.unlink(probe)
        except OSError as e:
            raise OSError(e.errno, e.strerror, str(folder)) from None
        free = shutil.disk_usage(folder).free
        if free < min_free:
            raise OSError(errno.ENOSPC, f"no space left on device ({free} bytes free)", str(folder))
    finally:  # the check leaves nothing behind: the command creates its folders when it writes
        for p in created:
            with contextlib.suppress(OSError):
                p.rmdir()


def raise_if_disk_full(path: str | os.PathLike, error: BaseException, min_free: int = MIN_FREE_BYTES) -> None:
    """Writers that report a failed write in their own words (torch.save's "unexpected pos", h5py's "Can't
    write data") are translated: when ``path``'s folder has less than ``min_free`` bytes free, raise
    OSError(ENOSPC) naming ``path`` from ``error``; otherwise return (the caller re-raises ``error``)."""
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if free < min_free:
        raise OSError(
            errno.ENOSPC,
            f"no space left on device ({free} bytes free; {type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''})",
            str(path),
        ) from error
