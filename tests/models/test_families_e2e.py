"""`vtw run`, `calibrate` and `bench` end to end on a tiny local copy of every family: the shrunk
shipped config with random weights and the family's stand-in processor, saved to a directory
and loaded by path like any checkpoint. A verified family must answer, calibrate and bench
with withdrawal; a refused one must say why in one line (exit 2), never answer wrongly.

Video is not covered: transformers' video processors need torchvision, which the test
environment does not install (a family's processor then takes images only).
"""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from vtwcli.cli import app
from vtwcli.models import SPECS
from vtwcli.models.catalog import family_status
from vtwcli.models.shrink import save_shrunk

torch.set_num_threads(1)
cli = CliRunner()
EAGER_ONLY = {"paligemma"}  # transformers' Gemma 2 decoder has no SDPA path


def _one_alias_per_family() -> dict[str, str]:
    out: dict[str, str] = {}
    for alias, spec in SPECS.items():
        shipped = spec.shipped()
        if shipped["processor"] is not None:
            out.setdefault(shipped["config"]["model_type"], alias)
    return out


FAMILIES = _one_alias_per_family()


def test_every_family_with_an_alias_is_covered_or_says_why_not():
    types = {s.shipped()["config"]["model_type"] for s in SPECS.values()}
    missing = types - set(FAMILIES)
    for spec in SPECS.values():
        if spec.shipped()["config"]["model_type"] in missing:
            assert spec.shipped()["processor_note"]  # e.g. its processor needs torchvision
    assert missing <= {"mistral3", "lfm2_vl", "smolvlm"}


def _run(*args):
    return cli.invoke(app, [str(a) for a in args])


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_run_calibrate_bench_on_a_tiny_local_copy(model_type, tmp_path):
    alias = FAMILIES[model_type]
    # 4 layers, K = 2: every family's first attention layer is before the withdrawal (Qwen3.5 needs that) and
    # an attention layer (with a KV cache to shrink) after it, in hybrid decoders too
    model_dir = save_shrunk(alias, tmp_path / "tiny", num_layers=4)
    Image.new("RGB", (336, 336), (200, 40, 40)).save(tmp_path / "red.png")
    attn = ["--attn", "eager"] if model_type in EAGER_ONLY else []
    common = ["--model", model_dir, "--device", "cpu", *attn]
    status, reason = family_status(model_type)

    run = _run("run", *common, "--image", tmp_path / "red.png", "--prompt", "what colour is it", "--k", 2,
               "--max-new-tokens", 2, "--json", "-")  # fmt: skip
    if status != "verified":
        assert run.exit_code == 2, run.output
        assert "not supported" in run.output and "Traceback" not in run.output
        assert len(run.output.strip().splitlines()) == 1
        return
    assert run.exit_code == 0, run.output
    answer = json.loads(run.output.strip().splitlines()[-1])
    assert answer["k"] == 2 and isinstance(answer["answer"], str)

    cal = _run("calibrate", *common, "--data", "shapes", "-n", 2, "--k-min", 2, "--no-save", "--json", "cal.json")
    assert cal.exit_code == 0, cal.output
    result = json.loads((tmp_path / "cal.json").read_text())
    assert 2 <= result["k"] <= 4 and len(result["curve"]) >= 2

    bench = _run("bench", *common, "--data", "shapes", "--limit", 2, "--k", 2, "--max-new-tokens", 2,
                 "--warmup", 0, "--methods", "baseline,vtw", "--json", "bench.json")  # fmt: skip
    assert bench.exit_code == 0, bench.output
    rows = {r["method"]: r for r in json.loads((tmp_path / "bench.json").read_text())["rows"]}
    assert rows["vtw"]["samples"] == 2 and rows["vtw"]["error"] is None
    # withdrawal happened: fewer FLOPs (both counts) and a smaller KV cache than the baseline
    assert rows["vtw"]["tflops_exact"] < rows["baseline"]["tflops_exact"]
    assert rows["vtw"]["kv_bytes_per_sample"] < rows["baseline"]["kv_bytes_per_sample"]
