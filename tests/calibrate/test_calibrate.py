"""calibrate() and `vtw calibrate` end to end on the bundled testbed model (a few samples)."""

from __future__ import annotations

import json
import os

import pytest
import torch
import yaml
from typer.testing import CliRunner

import vtwcli
from vtwcli.calibrate import calibrate
from vtwcli.cli import app
from vtwcli.data.base import Record, Source, Task
from vtwcli.errors import DatasetError, OutputPathError, ProfileError
from vtwcli.profiles import ModelRef, TaskEntry, load_profile, merge_task

runner = CliRunner()


@pytest.fixture(scope="module")
def testbed():
    torch.set_num_threads(1)
    from vtwcli.models import load_model

    return load_model("testbed", device="cpu", dtype="fp32")


def _other_task_entry():
    return TaskEntry(k=2, method="vtw", source="manual", note="kept across calibrations")


def test_same_seed_same_curve_and_k(testbed):
    a = calibrate(testbed, "shapes", samples=4, seed=3, write=False)
    b = calibrate(testbed, "shapes", samples=4, seed=3, write=False)
    assert a.k == b.k and a.sample_ids == b.sample_ids
    assert a.per_sample == b.per_sample
    c = calibrate(testbed, "shapes", samples=4, seed=4, write=False)
    assert c.sample_ids != a.sample_ids  # the seed does choose the samples


def test_library_paper_loop_gives_the_same_curve(testbed):
    fast = calibrate(testbed, "shapes", samples=3, batch_size=2, write=False)
    slow = calibrate(testbed, "shapes", samples=3, write=False, method="slow")
    for k in fast.curve:
        assert fast.per_sample[k] == pytest.approx(slow.per_sample[k], abs=1e-6, rel=1e-4)
    assert fast.k == slow.k
    n = testbed.num_layers
    assert fast.cost["fast_formula_forwards_per_sample"] < fast.cost["slow_formula_forwards_per_sample"]
    assert fast.curve[n].mean == 0.0 and fast.curve[1].mean > 0.0


def test_no_k_reaches_eta_means_k_equals_n_with_a_warning(testbed):
    result = calibrate(testbed, "shapes", samples=2, eta=1e-30, write=False)
    assert result.k == testbed.num_layers and not result.reached
    (warning,) = result.warnings
    k_best, kl_best = result.min_kl
    assert "smallest mean KL" in warning and f"K={k_best}" in warning and f"{kl_best:.3g}" in warning


def test_python_users_can_call_vtwcli_calibrate(testbed):
    first = vtwcli.calibrate(testbed, "shapes", samples=1, write=False)
    again = vtwcli.calibrate(testbed, "shapes", samples=1, write=False)  # the module is bound now
    assert first.per_sample == again.per_sample


def test_merge_keeps_other_tasks_and_records_the_run(testbed, tmp_path):
    path = tmp_path / "testbed.yaml"
    merge_task(path, testbed.model_ref(), "pope", _other_task_entry())
    result = calibrate(testbed, "shapes", samples=2, out=path)
    prof = load_profile(path)
    assert set(prof.tasks) == {"pope", "shapes"}
    assert prof.tasks["pope"].note == "kept across calibrations"
    cal = prof.tasks["shapes"].calibration
    assert prof.tasks["shapes"].k == result.k
    assert cal["samples"] == 2 and cal["seed"] == 0 and cal["eta"] == 0.003
    assert cal["dataset"]["dataset_id"] == "vtwcli/shapes" and cal["dataset"]["split"] == "test"
    assert set(cal["versions"]) == {"vtw", "transformers", "torch"}
    assert sorted(cal["curve"]) == list(result.curve)
    assert set(cal["curve"][1]) == {"mean", "min", "max", "std"}
    assert 0 < cal["flops_ratio"] <= 1.0


def test_other_models_profile_is_refused_before_running(testbed, tmp_path):
    path = tmp_path / "p.yaml"
    merge_task(path, ModelRef(alias="llava-1.5-7b", id="llava-hf/llava-1.5-7b-hf", num_layers=32), "sqa",
               TaskEntry(k=16))
    before = path.read_bytes()
    with pytest.raises(ProfileError, match="belongs to model 'llava-1.5-7b'"):
        calibrate(testbed, "shapes", samples=1, out=path)
    assert path.read_bytes() == before


def test_crash_while_writing_leaves_the_old_profile(testbed, tmp_path, monkeypatch):
    path = tmp_path / "testbed.yaml"
    merge_task(path, testbed.model_ref(), "pope", _other_task_entry())
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("power cut (simulated)")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OutputPathError, match="simulated"):
        calibrate(testbed, "shapes", samples=1, out=path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["testbed.yaml"]


class _TextOnly(Task):
    name = "textonly"

    def prompt(self, record):
        return record.question

    def images(self, record):
        return []


def test_task_without_images_is_refused(testbed):
    task = _TextOnly([Record(id=str(i), question="what is 2+2?") for i in range(5)], Source("local/textonly"))
    with pytest.raises(DatasetError, match="no record with an image"):
        calibrate(testbed, task, samples=2, write=False)


# ------------------------------------------------------------------------------ the command
def test_cli_writes_profile_plot_and_json(tmp_path):
    out, png, js = tmp_path / "prof.yaml", tmp_path / "kl.png", tmp_path / "r.json"
    res = runner.invoke(app, ["calibrate", "--samples", "2", "--out", str(out), "--plot", str(png),
                              "--json", str(js), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    data = json.loads(js.read_text())
    prof = load_profile(out)
    assert prof.tasks["shapes"].k == data["k"]
    assert "K = " in res.output and "mean KL" in res.output and "eta" in res.output
    assert "paper's loop" in res.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the file is plain YAML a person can read
    assert yaml.safe_load(out.read_text())["tasks"]["shapes"]["calibration"]["samples"] == 2


def test_cli_default_path_is_profiles_alias_yaml(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["calibrate", "--samples", "1", "--device", "cpu", "--k-min", "3"])
    assert res.exit_code == 0, res.output
    prof = load_profile(tmp_path / "profiles" / "testbed.yaml")
    assert prof.tasks["shapes"].calibration["k_min"] == 3


@pytest.mark.parametrize(
    "args, message",
    [
        (["--eta", "0"], "--eta must be a positive number"),
        (["--eta", "-0.1"], "--eta must be a positive number"),
        (["--eta", "abc"], "--eta must be a positive number"),
        (["--eta", "nan"], "--eta must be a positive number"),
        (["--samples", "0"], "--samples must be a whole number >= 1"),
        (["--k-min", "0"], "--k-min must be in 1.."),
        (["--k-min", "99"], "--k-min must be in 1.."),
        (["--direction", "sideways"], "--direction must be"),
        (["--data", "no-such-task"], "no-such-task"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(args, message, tmp_path):
    res = runner.invoke(app, ["calibrate", "--out", str(tmp_path / "p.yaml"), "--device", "cpu", *args])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert message in lines[0]
    assert not (tmp_path / "p.yaml").exists()


def test_cli_refuses_a_file_that_is_not_a_profile(tmp_path):
    path = tmp_path / "notes.yaml"
    path.write_text("shopping: [milk, eggs]\n")
    res = runner.invoke(app, ["calibrate", "--out", str(path), "--samples", "1"])
    assert res.exit_code == 2
    assert res.output.startswith("error: ") and "not a vtw profile" in res.output
    assert path.read_text() == "shopping: [milk, eggs]\n"


def test_cli_dataset_without_images_is_one_line(monkeypatch):
    import vtwcli.data

    task = _TextOnly([Record(id="0", question="hi")], Source("local/textonly"))
    monkeypatch.setattr(vtwcli.data, "get_task", lambda *a, **k: task)
    res = runner.invoke(app, ["calibrate", "--data", "textonly", "--no-save"])
    assert res.exit_code == 2 and res.output.count("\n") == 1
    assert "no record with an image" in res.output
