"""inspect() and `vtw inspect` end to end on the bundled testbed (a few samples)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import vtwcli
from vtwcli.cli import app
from vtwcli.data.base import Record, Source, Task
from vtwcli.errors import DatasetError, UsageError

runner = CliRunner()
SHIPPED_PROFILE = Path(__file__).resolve().parents[2] / "profiles" / "testbed.yaml"


@pytest.fixture(scope="module")
def testbed():
    torch.set_num_threads(1)
    from vtwcli.models import load_model

    return load_model("testbed", device="cpu", dtype="fp32")


def test_library_shares_sum_to_one_and_aggregate_the_samples(testbed):
    r = vtwcli.inspect(testbed, "shapes", samples=3, seed=1)
    assert len(r.sample_ids) == 3 and len(r.per_layer) == testbed.num_layers
    for row in r.per_layer + r.per_position:
        assert abs(sum(row) - 1.0) < 1e-5
    # the per-layer mean is the output-token-weighted mean of the per-sample means
    total = sum(s["outputs"] for s in r.per_sample)
    for j in range(testbed.num_layers):
        want = sum(s["outputs"] * s["per_layer"][j][1] for s in r.per_sample) / total
        assert r.per_layer[j][1] == pytest.approx(want, abs=1e-5)
    assert r.position_counts[0] == 3 and r.per_position[0][3] == 0.0  # nothing generated yet at token 0
    assert r.prompt_tokens["vision"] > 0 and r.k is None and r.engine is None


def test_library_withdraw_at_k_leaves_no_vision_share_after_k(testbed):
    r = vtwcli.inspect(testbed, "shapes", samples=2, k=3, withdraw=True)
    assert r.engine == {"method": "vtw", "k": 3}
    assert all(r.per_layer[j][1] == 0.0 for j in range(3, testbed.num_layers))
    assert all(r.per_layer[j][1] > 0.01 for j in range(3))
    assert vtwcli.engine.attached(testbed.model) is None  # detached afterwards


def test_library_fastv_mask_equals_fastv_in_place(testbed):
    """FastV's masking implementation keeps every key slot but masks the pruned half of the image:
    the shares are in-place FastV's, and the kept half still draws attention after K."""
    mask = vtwcli.inspect(testbed, "shapes", samples=2, k=3, withdraw=True, method="fastv-mask", ratio=0.5)
    inplace = vtwcli.inspect(testbed, "shapes", samples=2, k=3, withdraw=True, method="fastv", ratio=0.5)
    assert mask.engine == {"method": "fastv-mask", "k": 3, "ratio": 0.5}
    for a, b in zip(mask.per_layer, inplace.per_layer, strict=True):
        assert a == pytest.approx(b, abs=1e-5)
    assert all(mask.per_layer[j][1] > 0 for j in range(3, testbed.num_layers))


def test_library_k_from_profile(testbed):
    r = vtwcli.inspect(testbed, "shapes", samples=1, profile=str(SHIPPED_PROFILE))
    assert r.k == 5 and "testbed.yaml" in r.k_source


class _TextOnly(Task):
    name = "textonly"

    def prompt(self, record):
        return record.question

    def images(self, record):
        return []


def test_task_without_images_is_refused(testbed):
    task = _TextOnly([Record(id="0", question="what is 2+2?")], Source("local/textonly"))
    with pytest.raises(DatasetError, match="inspect measures the attention"):
        vtwcli.inspect(testbed, task, samples=1)


def test_withdraw_without_k_is_refused(testbed):
    with pytest.raises(UsageError, match="--withdraw attaches the engine at K"):
        vtwcli.inspect(testbed, "shapes", samples=1, withdraw=True)


def test_cli_table_json_and_plot(tmp_path):
    png, js = tmp_path / "attn.png", tmp_path / "attn.json"
    res = runner.invoke(app, ["inspect", "-n", "2", "--profile", str(SHIPPED_PROFILE), "--plot", str(png),
                              "--json", str(js), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "5 <- K" in res.output and "instruction" in res.output and "output token" in res.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(js.read_text())
    assert data["k"] == 5 and data["samples"] == 2 and data["types"] == ["system", "vision", "instruction", "output"]
    for row in data["per_layer"]:
        assert abs(sum(row[t] for t in data["types"]) - 1.0) < 1e-5


def test_cli_json_to_stdout_is_clean_json():
    res = runner.invoke(app, ["inspect", "-n", "1", "--json", "-", "--device", "cpu"])
    assert res.exit_code == 0
    start = res.stdout.index("{")
    assert json.loads(res.stdout[start:])["samples"] == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--k", "9"], "--k 9 is outside 1..6"),
        (["--k", "0"], "--k must be at least 1"),
        (["--withdraw"], "--withdraw attaches the engine at K"),
        (["--k", "2", "--withdraw", "--method", "magic"], "--method must be one of"),
        (["--limit", "0"], "--samples must be a whole number >= 1"),
        (["--plot", "attn.jpg"], "ending in .png"),
        (["--data", "no-such-task"], "no-such-task"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(args, message):
    res = runner.invoke(app, ["inspect", "--device", "cpu", *args])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert message in lines[0]


def test_cli_task_without_images_is_one_line(monkeypatch):
    import vtwcli.data

    task = _TextOnly([Record(id="0", question="hi")], Source("local/textonly"))
    monkeypatch.setattr(vtwcli.data, "get_task", lambda *a, **k: task)
    res = runner.invoke(app, ["inspect", "--data", "textonly"])
    assert res.exit_code == 2 and res.output.count("\n") == 1
    assert "has no record with an image or video" in res.output


def test_plot_without_matplotlib_is_one_line_and_tables_still_work(monkeypatch, tmp_path):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    res = runner.invoke(app, ["inspect", "-n", "1", "--plot", str(tmp_path / "a.png")])
    assert res.exit_code == 2 and res.output.count("\n") == 1
    assert "pip install 'vtwcli[plot]'" in res.output
    assert not (tmp_path / "a.png").exists()
    res = runner.invoke(app, ["inspect", "-n", "1", "--device", "cpu"])
    assert res.exit_code == 0 and "vision" in res.output
