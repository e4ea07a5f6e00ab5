"""The `fastv-mask` row of `vtw bench` (FastV's masking implementation) on the testbed: its
cache and FLOPs are the baseline's (every token computed and cached), its kept set and replies
are in-place FastV's, each checked against a row measured beside it or a run made here by hand."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

from vtwcli.bench import bench
from vtwcli.bench.runner import MethodSpec, not_pruned
from vtwcli.cli import app

cli = CliRunner()


@pytest.fixture(scope="module")
def testbed():
    torch.set_num_threads(1)
    from vtwcli.models import load_model

    return load_model("testbed", device="cpu", dtype="fp32")


def test_the_mask_row_holds_the_full_cache_and_costs_the_baseline_flops(testbed, tmp_path):
    res = bench(testbed, data="shapes", methods=("baseline", "fastv", "fastv-mask"), limit=3, max_new_tokens=2,
                warmup=0, device="cpu", log_samples=True)
    base, inplace, masked = res.row("baseline"), res.row("fastv"), res.row("fastv-mask")
    assert masked.error is None and masked.samples == 3
    # the cache: every token in every layer, byte for byte the baseline's; in-place FastV holds less
    assert masked.kv_bytes_per_sample == base.kv_bytes_per_sample > inplace.kv_bytes_per_sample
    assert masked.kv_ratio == 1.0 and inplace.kv_ratio < 1.0
    # what it computes is the baseline's prefill; in-place FastV's is less
    assert masked.tflops == base.tflops and masked.tflops_exact == base.tflops_exact
    assert masked.tflops_ratio == 1.0 and inplace.tflops_ratio < 1.0
    assert (masked.k, masked.ratio) == (inplace.k, inplace.ratio) == (2, 0.5)
    data = json.loads(res.to_json())
    rows = {r["method"]: r for r in data["rows"]}
    assert rows["fastv-mask"]["kind"] == "fastv-mask"
    assert data["settings"]["fastv_k"] == 2 and data["settings"]["fastv_ratio"] == 0.5
    assert set(data["paired"]) == {"fastv/baseline", "fastv-mask/baseline"}
    assert len(data["samples"]) == 3
    for entry in data["samples"]:
        got = entry["methods"]
        a, b, plain = got["fastv"], got["fastv-mask"], got["baseline"]
        # the same kept set: layers >= K attend to the text and round(n/2) of the n vision tokens
        pruned = b["vision_tokens"] - round(b["vision_tokens"] * 0.5)
        assert a["kept_tokens"] == b["kept_tokens"] == b["prompt_tokens"] - pruned
        assert a["reply"] == b["reply"]
        # every layer's cache: the mask row's is the baseline's; in-place FastV's layers >= K hold less
        assert b["kv_tokens_per_layer"] == plain["kv_tokens_per_layer"]
        assert b["kv_bytes"] == plain["kv_bytes"]
        assert a["kv_tokens_per_layer"][:2] == plain["kv_tokens_per_layer"][:2]
        assert all(x == y - pruned for x, y in zip(a["kv_tokens_per_layer"][2:], plain["kv_tokens_per_layer"][2:],
                                                    strict=True))
    assert any("fastv-mask is FastV's masking implementation" in n and "the fastv row" in n for n in res.notices)


def test_a_mask_row_that_masked_nothing_fails_and_r_zero_is_allowed():
    spec = MethodSpec("fastv-mask", k=2, ratio=0.5)
    ran = SimpleNamespace(n_layers=6, kept_tokens=99, prompt_tokens=99)
    assert not_pruned(spec, ran, 0).startswith("masked nothing on sample 1")
    assert not_pruned(spec, SimpleNamespace(n_layers=6, kept_tokens=58, prompt_tokens=99), 0) is None
    assert not_pruned(spec, SimpleNamespace(n_layers=6, kept_tokens=None, prompt_tokens=99), 0).startswith(
        "did not withdraw on sample 1")
    assert not_pruned(MethodSpec("fastv-mask", k=2, ratio=0.0), ran, 0) is None  # R = 0 masks nothing by request


@pytest.mark.parametrize(
    "args, message",
    [
        (["--methods", "baseline,fastv-mask", "--fastv-k", "7"], "--fastv-k=7 is outside 1..6"),
        (["--methods", "baseline,fastv-mask", "--fastv-k", "0"], "--fastv-k must be at least 1"),
        (["--methods", "fastv-mask", "--fastv-ratio", "2"], "--fastv-ratio is the share"),
        (["--methods", "fastv-mask,fastv-mask"], "listed twice"),
    ],
)
def test_cli_bad_mask_rows_are_one_line(args, message):
    res = cli.invoke(app, ["bench", "--limit", "1", "--device", "cpu", *args])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], res.output
