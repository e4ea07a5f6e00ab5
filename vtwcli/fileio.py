"""Writing files so that nothing is ever half-written.

Every file vtw writes (profiles, answers, bench results) goes through :func:`write_atomic`:
a temporary file beside the target, flushed and fsynced, then renamed over it. An
interrupted write leaves the old file as it was and no temporary behind.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from vtwcli.errors import OutputPathError


def write_atomic(path: str | os.PathLike, text: str) -> Path:
    """Replace ``path`` with ``text`` all at once; raises OutputPathError if it cannot be written."""
    p = Path(path).expanduser()
    parent = p.parent if str(p.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=parent)
    except OSError as err:
        raise OutputPathError(f"cannot write {p}: {err.strerror or err}") from err
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException as err:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(err, OSError):
            raise OutputPathError(f"cannot write {p}: {err.strerror or err}; the old file is unchanged") from err
        raise
    return p


def check_writable(path: str | os.PathLike | None, what: str) -> Path | None:
    """Fail before any work when ``path`` cannot be written (nothing is created). ``-`` is stdout."""
    if path is None or str(path) == "-":
        return None
    p = Path(path).expanduser()
    if p.is_dir():
        raise OutputPathError(f"{what} path {p} is a directory; give a file name such as {p / ('out.' + what)}")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise OutputPathError(f"cannot write {what} to {p}: directory {parent} does not exist; create it first")
    if p.exists() and not os.access(p, os.W_OK):
        raise OutputPathError(f"cannot write {what} to {p}: the file exists and is read-only")
    # Trying is the only reliable test (root ignores permission bits, some filesystems refuse anyway).
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".probe", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OutputPathError(
            f"cannot write {what} to {p}: directory {parent} is not writable ({err.strerror or err})"
        ) from err
    return p


def write_atomic_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """:func:`write_atomic` for binary content (pictures)."""
    p = Path(path).expanduser()
    parent = p.parent if str(p.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=parent)
    except OSError as err:
        raise OutputPathError(f"cannot write {p}: {err.strerror or err}") from err
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException as err:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(err, OSError):
            raise OutputPathError(f"cannot write {p}: {err.strerror or err}; the old file is unchanged") from err
        raise
    return p
