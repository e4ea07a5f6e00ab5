"""`--eta 0.001,0.003,0.01`: the K of every threshold from the one sweep (the paper's Table 5)."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from vtwcli.calibrate import calibrate
from vtwcli.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def testbed():
    torch.set_num_threads(1)
    from vtwcli.models import load_model

    return load_model("testbed", device="cpu", dtype="fp32")


def _count_calls(loaded):
    """Counters of model forwards and decoder-layer calls, and a function removing the hooks."""
    counts = {"model": 0, "layers": 0}
    hooks = [loaded.model.register_forward_pre_hook(lambda *a: counts.__setitem__("model", counts["model"] + 1))]
    for layer in loaded.arch.decoder_layers(loaded.model):
        hooks.append(layer.register_forward_pre_hook(lambda *a: counts.__setitem__("layers", counts["layers"] + 1)))
    return counts, lambda: [h.remove() for h in hooks]


def test_every_threshold_gets_its_k_from_one_sweep(testbed):
    etas = [0.003, 0.05, 1e-6, 0.5]
    counts1, done1 = _count_calls(testbed)
    one = calibrate(testbed, "shapes", samples=4, eta=0.003, write=False)
    done1()
    counts4, done4 = _count_calls(testbed)
    many = calibrate(testbed, "shapes", samples=4, eta=etas, write=False)
    done4()
    assert counts4 == counts1 and counts1["model"] > 0  # no extra forwards, no extra layer calls
    assert [row["eta"] for row in many.thresholds] == etas
    assert many.k == one.k and many.eta == 0.003  # the first threshold is the one saved
    for row in many.thresholds:
        # independently: a calibration run with that threshold alone picks the same K
        alone = calibrate(testbed, "shapes", samples=4, eta=row["eta"], write=False)
        assert row["k"] == alone.k and row["reached"] == alone.reached
    ks = {row["eta"]: row["k"] for row in many.thresholds}
    assert ks[0.5] <= ks[0.05] <= ks[0.003] <= ks[1e-6]  # not vacuous: looser thresholds pick smaller K
    assert ks[0.5] < ks[1e-6]


def test_cli_eta_list_table_and_json(tmp_path):
    js = tmp_path / "r.json"
    res = runner.invoke(app, ["calibrate", "--eta", "0.003,0.05", "--samples", "2", "--no-save", "--json", str(js),
                              "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "K by eta" in res.output
    data = json.loads(js.read_text())
    assert [row["eta"] for row in data["thresholds"]] == [0.003, 0.05] and data["eta"] == 0.003


@pytest.mark.parametrize("eta, message", [("0.003,abc", "--eta must be a positive number"),
                                          ("0.003,0.003", "lists a threshold twice"),
                                          ("0.003,-1", "--eta must be a positive number")])
def test_cli_bad_eta_list_is_one_line(eta, message, tmp_path):
    res = runner.invoke(app, ["calibrate", "--eta", eta, "--no-save"])
    assert res.exit_code == 2, res.output
    assert res.output.count("\n") == 1 and res.output.startswith("error: ") and message in res.output
