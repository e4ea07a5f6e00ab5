"""`vtw run`, `calibrate` and `bench` end to end on a tiny local copy of every family: the shrunk
shipped config with random weights and the family's stand-in processor, saved to a directory
and loaded by path like any checkpoint. A verified family must answer, calibrate and bench
with withdrawal; a refused one must say why in one line (exit 2), never answer wrongly.

Video is not covered, nor are Mistral 3, LFM2-VL and SmolVLM: their processors and transformers'
video processors need torchvision, and the package index's torchvision is a CUDA build that
does not load beside the CPU torch (docs/models.md says what was tried). Without it a family's
processor takes images only.
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


def test_bench_defaults_on_a_hybrid_decoder_take_ks_the_engine_accepts(tmp_path):
    # Qwen3.5's own layer pattern (three linear-attention layers, then attention): K must be past
    # layer 3, and FastV's layer K-1 must attend, so FastV's K=2 and VTW's half (3 of 6) are refused
    model_dir = save_shrunk("qwen3.5-9b", tmp_path / "tiny", num_layers=6, real_layers=True)
    types = json.loads((model_dir / "config.json").read_text())["text_config"]["layer_types"]
    assert types == ["linear_attention"] * 3 + ["full_attention"] + ["linear_attention"] * 2
    common = ["--model", model_dir, "--device", "cpu", "--data", "shapes", "--limit", 2, "--max-new-tokens", 2,
              "--warmup", 0]  # fmt: skip

    bench = _run("bench", *common, "--json", "bench.json")  # the default methods: baseline, fastv, vtw
    assert bench.exit_code == 0, bench.output
    out = json.loads((tmp_path / "bench.json").read_text())
    rows = {r["method"]: r for r in out["rows"]}
    assert rows["fastv"]["k"] == 4 and rows["vtw"]["k"] == 4 and out["settings"]["fastv_k"] == 4
    for method in ("fastv", "vtw"):
        assert rows[method]["error"] is None and rows[method]["samples"] == 2
        assert rows[method]["tflops_exact"] < rows["baseline"]["tflops_exact"]  # tokens were dropped
    notes = " ".join(out["notices"])
    assert "FastV's own K=2 is refused for this model; 4 is the nearest K" in notes
    assert "VTW runs with K=4 (the K nearest half of 6 layers (3) that this model accepts)" in notes

    # random-k's default range (the paper's 8..24 of 32, here 2..5) starts past the first attention layer
    rand = _run("bench", *common, "--methods", "baseline,random-k", "--json", "rand.json")
    assert rand.exit_code == 0, rand.output
    out = json.loads((tmp_path / "rand.json").read_text())
    assert out["settings"]["k_range"] == [4, 5]
    assert all(r["error"] is None for r in out["rows"])

    # a K the user asks for is not moved: the engine's refusal is the answer, in one line
    bad = _run("bench", *common, "--fastv-k", 2, "--methods", "baseline,fastv")
    assert bad.exit_code == 2 and "Choose K between 4 and 6" in bad.output and "Traceback" not in bad.output
