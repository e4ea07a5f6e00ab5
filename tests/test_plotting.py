"""matplotlib is an optional extra: imported only for --plot, one clear line without it."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from vtwcli.cli import app

runner = CliRunner()


@pytest.fixture
def no_matplotlib(monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError


def test_calibrate_plot_without_matplotlib_fails_before_any_work(no_matplotlib, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["calibrate", "--samples", "1", "--plot", "kl.png"])
    assert res.exit_code == 2 and res.output.count("\n") == 1
    assert "pip install 'vtwcli[plot]'" in res.output
    assert not (tmp_path / "profiles").exists() and not (tmp_path / "kl.png").exists()


def test_calibrate_without_plot_needs_no_matplotlib(no_matplotlib, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["calibrate", "--samples", "1", "--no-save", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "eta" in res.output  # the text curve


def test_importing_the_commands_does_not_import_matplotlib():
    code = ("import sys, vtwcli.cli, vtwcli.inspect, vtwcli.calibrate.report, vtwcli.inspect.report; "
            "print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_help_lists_inspect():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0 and "inspect" in res.output
