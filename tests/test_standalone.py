"""The repository stands alone: no tracked text file points outside it, names a tracker's issue
number or shows the paths of a machine it was built on.

Every file git tracks is read (binary files, those with a NUL byte, are passed over); without a
git checkout the tree is walked instead, leaving out virtual environments and caches. Upstream
projects' issues (lmms-eval's) may be cited by number: a line that names the upstream project
is allowed its issue numbers, nothing else.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from vtwcli.fileio import recorded_path

REPO = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".git", "__pycache__", ".pytest_cache", ".ruff_cache", "build", "dist", "runs", "out"}
# written in pieces so that this file does not match itself
MACHINE = re.compile("(?<![\\w.~-])/(?:" + "work|tmp|home|Users|root" + ")/")
OUTSIDE = re.compile(r"\.\./" + "shared" + r"\b|\b" + "shared" + r"/(?:docs|seeds)\b")
ISSUE = re.compile(r"\b" + "issues?" + r"\s+#?\d+|(?<![\w&#])#\d{1,5}\b", re.IGNORECASE)
UPSTREAM = re.compile(r"lmms-eval|upstream", re.IGNORECASE)


def tracked_files() -> list[Path]:
    if shutil.which("git") and (REPO / ".git").exists():
        out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
        return [REPO / name for name in out.decode().split("\0") if name]
    found = []
    for dirpath, dirnames, filenames in os.walk(REPO):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.startswith(".venv")]
        found += [Path(dirpath) / f for f in filenames]
    return found


def problems(name: str, text: str) -> list[str]:
    found = []
    for n, line in enumerate(text.splitlines(), 1):
        if MACHINE.search(line):
            found.append(f"{name}:{n}: a machine path: {line.strip()[:120]}")
        if OUTSIDE.search(line):
            found.append(f"{name}:{n}: points outside the repository: {line.strip()[:120]}")
        if ISSUE.search(line) and not UPSTREAM.search(line):
            found.append(f"{name}:{n}: an issue number: {line.strip()[:120]}")
    return found


def test_no_tracked_file_points_outside_or_shows_machine_paths():
    files = tracked_files()
    assert len(files) > 50 and any(f.name == "README.md" for f in files)
    found, scanned = [], 0
    for path in files:
        if not path.is_file():
            continue  # deleted in the working tree, not yet committed
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue
        scanned += 1
        found += problems(path.relative_to(REPO).as_posix(), data.decode("utf-8", errors="replace"))
    assert scanned > 50
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    "line, bad",
    [
        ('  "model_dir": "' + "/wo" + 'rk/main/vtwcli/models/testbed",', True),
        ('    "init_from": "' + "/t" + 'mp/tb_d0",', True),
        ("see ../" + "sha" + "red/docs/flops.md", True),
        ("as agreed in " + "issue" + " 12", True),
        ("fixed in " + "#" + "12", True),
        ("(lmms-eval " + "issue" + " 1436, fixed upstream)", False),
        ('  "model_dir": "vtwcli/models/testbed",', False),
        ('colour="#1f77b4", path="docs/images/x.png"', False),
        ("the machine was heavily shared while these ran", False),
    ],
)
def test_the_scan_finds_what_it_should(line, bad):
    assert bool(problems("x", line)) is bad


def test_recorded_paths_are_relative_to_the_repository_or_a_name(tmp_path):
    assert recorded_path(REPO / "vtwcli" / "models" / "testbed", REPO) == "vtwcli/models/testbed"
    assert recorded_path(tmp_path / "tb_d0", REPO) == "tb_d0"
    assert recorded_path(REPO, REPO) == "."
