"""Output files: created like open() creates them (0o666 minus the umask), a replaced file keeps
its mode, and an unwritable directory gets one plain message."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from vtwcli.errors import OutputPathError
from vtwcli.fileio import check_writable, current_umask, write_atomic


def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


@pytest.fixture
def umask():
    def set_(mask):
        old = os.umask(mask)
        previous.append(old)

    previous: list[int] = []
    yield set_
    if previous:
        os.umask(previous[0])


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_new_file_gets_the_mode_open_would_give(tmp_path, umask, mask):
    umask(mask)
    assert current_umask() == mask
    with open(tmp_path / "by_open.txt", "w") as fh:  # the reference: what any tool would create
        fh.write("x")
    write_atomic(tmp_path / "ours.txt", "x")
    assert _mode(tmp_path / "ours.txt") == _mode(tmp_path / "by_open.txt") == 0o666 & ~mask


def test_replaced_file_keeps_its_mode(tmp_path, umask):
    umask(0o022)
    target = tmp_path / "profile.yaml"
    target.write_text("old")
    os.chmod(target, 0o640)
    write_atomic(target, "new")
    assert target.read_text() == "new" and _mode(target) == 0o640
    os.chmod(target, 0o604)
    write_atomic(target, b"bytes too")
    assert target.read_bytes() == b"bytes too" and _mode(target) == 0o604


def test_no_temporary_left_behind(tmp_path):
    write_atomic(tmp_path / "a.json", "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_unwritable_directory_is_one_plain_message():
    if not Path("/proc").is_dir():
        pytest.skip("needs /proc (a directory nobody can create files in, root included)")
    with pytest.raises(OutputPathError) as err:
        check_writable("/proc/x.jsonl", "answers")
    msg = str(err.value)
    assert msg == "cannot write answers to /proc/x.jsonl: directory /proc is not writable; choose a directory you can write to"
    assert "No such file" not in msg
    with pytest.raises(OutputPathError, match="directory /proc is not writable"):
        write_atomic("/proc/x.json", "{}")


def test_missing_directory_is_named(tmp_path):
    with pytest.raises(OutputPathError, match="does not exist; create it first"):
        check_writable(tmp_path / "no" / "x.json", "json")
    # allowed when the caller will create it, and nothing is created by the check
    assert check_writable(tmp_path / "no" / "deeper" / "x.yaml", "profile", create_dirs=True)
    assert not (tmp_path / "no").exists()
