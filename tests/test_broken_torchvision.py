"""A torchvision that is installed but does not load (the package index's wheels are CUDA builds;
next to a CPU torch their compiled ops are missing) breaks transformers' imports. The CLI says
so in one line instead of a traceback from deep inside transformers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _vtw(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]))
    return subprocess.run([sys.executable, "-m", "vtwcli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def test_a_torchvision_that_does_not_load_is_one_line(tmp_path):
    site = tmp_path / "site"
    (site / "torchvision").mkdir(parents=True)
    # what the CUDA wheel's import raises next to a CPU torch
    (site / "torchvision" / "__init__.py").write_text('raise RuntimeError("operator torchvision::nms does not exist")\n')
    (site / "torchvision-0.28.0.dist-info").mkdir()
    (site / "torchvision-0.28.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: torchvision\nVersion: 0.28.0\n")
    Image.new("RGB", (32, 32), (200, 0, 0)).save(tmp_path / "red.png")
    args = ("run", "--model", "testbed", "--device", "cpu", "--prompt", "hi", "--image", "red.png")

    out = _vtw(site, tmp_path, *args)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr
    assert lines[0].startswith("error: torchvision 0.28.0 is installed but does not load with torch ")
    assert "operator torchvision::nms does not exist" in lines[0] and "pip uninstall torchvision" in lines[0]

    debug = _vtw(site, tmp_path, "--debug", *args)  # the failure is transformers' own import
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "torchvision::nms" in debug.stderr
