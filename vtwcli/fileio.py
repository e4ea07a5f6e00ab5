"""Writing files so that nothing is ever half-written.

Every file vtw writes (profiles, answers, bench results, plots) goes through
:func:`write_atomic`: a temporary file beside the target, flushed and fsynced, then renamed
over it. An interrupted write leaves the old file as it was and no temporary behind.

The file ends up with the permissions any other tool would give it: a new file gets
``0o666`` minus the umask (as ``open()`` creates it), a replaced file keeps its own mode.

:func:`check_writable` is called for every output path before any model loads, so a run
never does its work and then fails to save it.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from vtwcli.errors import OutputPathError


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux: /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no other way to read it: set and restore at once
    os.umask(mask)
    return mask


def _mode_for(p: Path) -> int:
    """The mode ``p`` should have: its current one when it exists, else 0o666 minus the umask."""
    try:
        return stat.S_IMODE(os.stat(p).st_mode)
    except OSError:
        return 0o666 & ~current_umask()


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Replace ``path`` with ``data`` (text as UTF-8, or bytes) all at once.

    Raises OutputPathError if it cannot be written; the old file is then unchanged.
    """
    p = Path(path).expanduser()
    parent = p.parent if str(p.parent) else Path(".")
    mode = _mode_for(p)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=parent)
    except OSError as err:
        raise OutputPathError(f"cannot write {p}: {_reason(err, parent)}") from err
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            try:
                os.fchmod(fh.fileno(), mode)  # mkstemp creates 0600; give it the mode open() would
            except OSError:
                pass  # a filesystem without modes (some network or FAT mounts)
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException as err:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(err, OSError):
            reason = _reason(err, parent) if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS) else (
                err.strerror or str(err))
            raise OutputPathError(f"cannot write {p}: {reason}; the old file is unchanged") from err
        raise
    return p


def _reason(err: OSError, directory: Path) -> str:
    """One plain reason for a failed write (no contradictory errno text such as ENOENT for /proc)."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left in {directory}"
    if err.errno == errno.EROFS:
        return f"{directory} is on a read-only file system"
    if err.errno == errno.ENOENT and not directory.is_dir():
        return f"directory {directory} does not exist; create it first"
    return f"directory {directory} is not writable; choose a directory you can write to"


def check_writable(
    path: str | os.PathLike | None, what: str, *, create_dirs: bool = False, example: str | None = None
) -> Path | None:
    """Fail before any work when ``path`` cannot be written; nothing is created. ``-`` is stdout.

    ``create_dirs=True``: missing directories are fine when they could be created (the caller
    creates them when it writes), so the nearest existing one is checked instead. ``example``
    is the file name suggested when ``path`` is a directory (default ``out.<what>``).
    """
    if path is None or str(path) == "-":
        return None
    p = Path(path).expanduser()
    if p.is_dir():
        raise OutputPathError(f"{what} path {p} is a directory; give a file name such as {p / (example or 'out.' + what)}")
    parent = p.parent if str(p.parent) else Path(".")
    probe_dir = parent
    if not parent.is_dir():
        if not create_dirs:
            raise OutputPathError(f"cannot write {what} to {p}: directory {parent} does not exist; create it first")
        while not probe_dir.is_dir():
            if probe_dir.exists():  # a file where a directory should be
                raise OutputPathError(f"cannot write {what} to {p}: {probe_dir} is a file, not a directory")
            probe_dir = probe_dir.parent
    if p.exists() and not os.access(p, os.W_OK):
        raise OutputPathError(f"cannot write {what} to {p}: the file exists and is read-only")
    # Trying is the only reliable test (root ignores permission bits, /proc and some mounts refuse anyway).
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".probe", dir=probe_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OutputPathError(f"cannot write {what} to {p}: {_reason(err, probe_dir)}") from err
    return p


def write_atomic_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """:func:`write_atomic` for binary content (pictures)."""
    return write_atomic(path, bytes(data))


def recorded_path(path: str | os.PathLike, root: str | os.PathLike) -> str:
    """How a result file records ``path``: relative to ``root`` (the repository) when it lies
    inside it, else only its last part, so that a committed result never carries the paths of
    the machine that wrote it."""
    p = Path(path).expanduser().absolute()
    base = Path(root).expanduser().absolute()
    try:
        return p.relative_to(base).as_posix() or "."
    except ValueError:
        return p.name
