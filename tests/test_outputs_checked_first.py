"""Every output path of run, calibrate and bench is checked before any model loads, and nothing is
written when any requested output cannot be."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vtwcli.cli import app

runner = CliRunner()
UNWRITABLE = "/proc/vtw-test-out"  # a directory nobody can create files in, root included


@pytest.fixture(autouse=True)
def _needs_proc(monkeypatch, tmp_path):
    if not Path("/proc").is_dir():
        pytest.skip("needs /proc")
    monkeypatch.chdir(tmp_path)  # no profiles/ from the checkout


@pytest.fixture
def no_loading(monkeypatch):
    """Fail the test if any model starts loading."""
    import vtwcli.models

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the output paths were checked")

    monkeypatch.setattr(vtwcli.models, "load_model", refuse)


def _one_line_error(result, *needles):
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for n in needles:
        assert n in lines[0], lines[0]


def test_run_output_checked_before_answering(tmp_path, no_loading):
    (tmp_path / "q.jsonl").write_text(json.dumps({"prompt": "is there a red circle ?"}) + "\n")
    result = runner.invoke(app, ["run", "--input", str(tmp_path / "q.jsonl"), "--output", "/proc/x.jsonl"])
    _one_line_error(result, "/proc/x.jsonl", "directory /proc is not writable")
    assert "No such file" not in result.output


def test_calibrate_plot_checked_before_the_sweep_and_no_profile_written(tmp_path, no_loading):
    prof = tmp_path / "p.yaml"
    result = runner.invoke(app, ["calibrate", "--out", str(prof), "--plot", "/proc/kl.png"])
    _one_line_error(result, "/proc/kl.png")
    assert not prof.exists() and list(tmp_path.iterdir()) == []


def test_calibrate_json_checked_before_the_sweep(tmp_path, no_loading):
    result = runner.invoke(app, ["calibrate", "--json", f"{UNWRITABLE}/r.json", "--no-save"])
    _one_line_error(result, "r.json")


def test_calibrate_default_profile_location_checked_before_the_sweep(tmp_path, no_loading):
    (tmp_path / "profiles").write_text("a file where the profiles directory should be")
    result = runner.invoke(app, ["calibrate"])
    _one_line_error(result, "profiles")


def test_calibrate_profile_in_unwritable_directory(tmp_path, no_loading):
    result = runner.invoke(app, ["calibrate", "--out", "/proc/p.yaml"])
    _one_line_error(result, "/proc/p.yaml", "not writable")


def test_bench_outputs_checked_before_loading(tmp_path, no_loading):
    good = tmp_path / "r.csv"
    result = runner.invoke(app, ["bench", "--csv", str(good), "--json", "/proc/r.json"])
    _one_line_error(result, "/proc/r.json")
    assert not good.exists()
