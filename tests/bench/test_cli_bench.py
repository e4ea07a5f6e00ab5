"""`vtw bench` through typer's CliRunner: outputs, every column in the JSON, bad input."""

from __future__ import annotations

import csv
import io
import json
import os

import pytest
from typer.testing import CliRunner

from vtwcli.bench.result import ROW_FIELDS
from vtwcli.cli import app

runner = CliRunner()
FAST = ["bench", "--limit", "2", "--max-new-tokens", "2", "--device", "cpu"]


def _invoke(args):
    return runner.invoke(app, args, env={"HF_HUB_OFFLINE": "1", "COLUMNS": "250"})


def test_bench_writes_json_csv_markdown_with_every_column(tmp_path):
    js, cs, md = tmp_path / "out.json", tmp_path / "rows.csv", tmp_path / "table.md"
    res = _invoke([*FAST, "--methods", "baseline,fastv,vtw,rand", "--json", str(js), "--csv", str(cs),
                   "--markdown", str(md), "--log-samples"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "vtw bench" in res.output and "baseline" in res.output
    data = json.loads(js.read_text())
    assert data["kind"] == "vtw-bench"
    assert [r["method"] for r in data["rows"]] == ["baseline", "fastv", "vtw", "rand"]
    for row in data["rows"]:
        assert set(ROW_FIELDS) <= set(row), set(ROW_FIELDS) - set(row)
        assert row["samples"] == 2 and row["error"] is None
        assert row["prefill_ms"]["median"] > 0 and row["e2e_ms"]["n"] == 2
        assert row["kv_bytes_per_sample"] > 0 and row["tflops"] > 0
        assert row["peak_mem_bytes"] is None  # no CUDA here: n/a, not zero
    base, fastv, vtw, rand = data["rows"]
    assert base["tflops_ratio"] == 1.0 and base["agreement"] == 1.0
    assert vtw["kv_bytes_per_sample"] < fastv["kv_bytes_per_sample"] < base["kv_bytes_per_sample"]
    assert vtw["tflops"] == rand["tflops"]
    for key in ("device_name", "versions", "torch_threads"):
        assert key in data["environment"]
    assert data["environment"]["versions"]["transformers"]
    assert data["settings"]["dtype"] and data["settings"]["attn"] == "sdpa"
    assert data["settings"]["max_new_tokens"] == 2 and data["task"]["samples"] == 2
    assert any("no CUDA" in n for n in data["notices"])
    assert len(data["samples"]) == 2 and set(data["samples"][0]["methods"]) == {"baseline", "fastv", "vtw", "rand"}
    rows = list(csv.DictReader(io.StringIO(cs.read_text())))
    assert [r["method"] for r in rows] == ["baseline", "fastv", "vtw", "rand"]
    assert "prefill_ms_median" in rows[0] and "nvml_per_sample_bytes" in rows[0]
    text = md.read_text()
    assert text.startswith("| method") and "| vtw" in text and "n/a" in text
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_k_equal_to_n_agrees_with_baseline_everywhere(tmp_path):
    from vtwcli.models import load_model

    n = load_model("testbed", device="cpu").num_layers
    js = tmp_path / "out.json"
    res = _invoke([*FAST, "--methods", "baseline,vtw", "--k", str(n), "--json", str(js)])
    assert res.exit_code == 0, res.output
    base, vtw = json.loads(js.read_text())["rows"]
    # K = N withdraws nothing: same answers, same cache, same formula cost
    assert vtw["agreement"] == 1.0 and vtw["kv_ratio"] == 1.0 and vtw["tflops_ratio"] == 1.0
    assert vtw["accuracy"] == base["accuracy"]


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--methods", "baseline,fastvv"], "unknown method 'fastvv'"),
        (["--methods", ","], "no method given"),
        (["--limit", "0"], "--limit must be at least 1"),
        (["--k", "0"], "--k must be at least 1"),
        (["--k", "99"], "--k=99 is outside 1.."),
        (["--fastv-k", "99"], "--fastv-k=99 is outside 1.."),
        (["--fastv-ratio", "1.5"], "--fastv-ratio"),
        (["--log-samples"], "add --json"),
        (["--random-init", "--data", "shapes"], "--random-init measures speed"),
        (["--prompt-style", "llama3"], "--prompt-style must be one of chat, vicuna_v1"),
        (["--subset", "all"], "--subset must be 'random'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, needle, tmp_path):
    js = tmp_path / "out.json"
    extra = [] if "--log-samples" in args else ["--json", str(js)]
    res = _invoke([*FAST, *args, *extra])
    assert res.exit_code == 2, res.output
    assert needle in res.output
    assert "Traceback" not in res.output
    assert not js.exists() and os.listdir(tmp_path) == []


def test_unwritable_output_paths_fail_before_any_work(tmp_path):
    missing = tmp_path / "no" / "such" / "dir" / "out.json"
    res = _invoke([*FAST, "--json", str(missing)])
    assert res.exit_code == 2 and "does not exist" in res.output
    # /proc refuses new files even to root, unlike a chmod'ed directory
    res = _invoke([*FAST, "--csv", "/proc/vtw-bench-rows.csv"])
    assert res.exit_code == 2 and "not writable" in res.output, res.output
    res = _invoke([*FAST, "--markdown", str(tmp_path)])
    assert res.exit_code == 2 and "is a directory" in res.output
    assert os.listdir(tmp_path) == []


def test_k_comes_from_profiles_in_the_working_directory(tmp_path):
    # what `vtw calibrate` wrote (profiles/testbed.yaml) is what the next `vtw bench` runs
    from vtwcli.profiles import ModelRef, Profile, TaskEntry, save_profile

    save_profile(
        Profile(model=ModelRef(alias="testbed", id="vtwcli/testbed", num_layers=6), tasks={"shapes": TaskEntry(k=4)}),
        tmp_path / "profiles" / "testbed.yaml",
    )
    js = tmp_path / "out.json"
    res = _invoke([*FAST, "--methods", "baseline,vtw", "--json", str(js)])
    assert res.exit_code == 0, res.output
    data = json.loads(js.read_text())
    assert data["rows"][1]["k"] == 4
    assert any("profiles/testbed.yaml" in n for n in data["notices"])


def test_json_and_markdown_hold_the_paired_block(tmp_path):
    js, md = tmp_path / "out.json", tmp_path / "t.md"
    res = _invoke(["bench", "--limit", "3", "--max-new-tokens", "3", "--min-new-tokens", "3", "--device", "cpu",
                   "--k", "3", "--json", str(js), "--markdown", str(md)])  # fmt: skip
    assert res.exit_code == 0, res.output
    data = json.loads(js.read_text())
    assert set(data["paired"]) == {"fastv/baseline", "vtw/baseline", "vtw/fastv"}
    for entry in data["paired"].values():
        for measure in ("prefill", "decode_per_token", "e2e", "e2e_per_token"):
            got = entry[measure]
            assert got["n"] == 3 and got["ci95"][0] <= got["median"] <= got["ci95"][1]
            assert got["verdict"] in ("faster", "slower", "no difference shown")
    vtw = data["rows"][2]
    assert vtw["prefill_ratio"] == data["paired"]["vtw/baseline"]["prefill"]["median"]
    # --min-new-tokens forced every reply of every method to 3 tokens
    assert all(r["new_tokens_mean"] == 3 for r in data["rows"]) and data["settings"]["min_new_tokens"] == 3
    text = md.read_text()
    assert "| vtw/fastv" in text and "95% bootstrap interval" in text
    assert "paired ratios" in res.output


def test_min_new_tokens_above_max_is_refused(tmp_path):
    res = _invoke([*FAST, "--min-new-tokens", "5"])
    assert res.exit_code == 2 and "--min-new-tokens 5 is more than --max-new-tokens 2" in res.output
