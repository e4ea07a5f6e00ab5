"""--shrink: a listed architecture's real token geometry (processor, chat template, vision-token
count) with a small decoder; the result says what was shrunk."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from vtwcli.cli import app
from vtwcli.models import load_model, shipped_config_dict
from vtwcli.models.shrink import cpu_config_dict

cli = CliRunner()


def test_shrunk_config_keeps_geometry_and_shrinks_the_decoder():
    full = shipped_config_dict("llava-1.5-7b")
    cfg, shrunk = cpu_config_dict(full)
    assert cfg["text_config"]["num_hidden_layers"] == 16 and cfg["text_config"]["hidden_size"] == 512
    assert shrunk.layers == (32, 16) and shrunk.hidden == (4096, 512) and shrunk.vision_layers == (24, 2)
    # what decides the prompt's shape is untouched
    for key in ("image_token_index", "vision_feature_layer", "vision_feature_select_strategy"):
        assert cfg[key] == full[key]
    for key in ("image_size", "patch_size"):
        assert cfg["vision_config"][key] == full["vision_config"][key]
    assert cfg["text_config"]["vocab_size"] == full["text_config"]["vocab_size"]
    assert "instead of 32 x 4096" in shrunk.describe()


@pytest.mark.parametrize("alias, vision_tokens", [
    ("llava-1.5-7b", (336 // 14) ** 2),    # 576: CLIP-L/14 at 336 px, CLS dropped
    ("video-llava-7b", (224 // 14) ** 2),  # 256: its image tower at 224 px
])  # fmt: skip
def test_shrunk_model_takes_the_real_number_of_vision_tokens(alias, vision_tokens):
    torch.set_num_threads(1)
    lm = load_model(alias, random_init=True, shrink=True, device="cpu", dtype="fp32")
    assert lm.num_layers == 16 and lm.shrunk is not None
    inputs = lm.prepare(["Describe the picture."], images=[[Image.new("RGB", (640, 480), (200, 30, 30))]])
    assert int((inputs["input_ids"] == lm.arch.image_token_id(lm.config)).sum()) == vision_tokens
    with torch.inference_mode():
        logits = lm.model(**inputs).logits
    assert logits.shape[1] == inputs["input_ids"].shape[1]  # the decoder took every placeholder's feature


def test_shrink_needs_random_init():
    res = cli.invoke(app, ["bench", "--model", "llava-1.5-7b", "--shrink"])
    assert res.exit_code == 2 and res.output.startswith("error: --shrink builds a small random-weight copy")
    assert res.output.count("\n") == 1


@pytest.mark.slow
def test_bench_shrink_says_what_was_shrunk(tmp_path):
    out = tmp_path / "r.json"
    res = cli.invoke(app, ["bench", "--model", "llava-1.5-7b", "--random-init", "--shrink", "--limit", "1",
                           "--warmup", "0", "--max-new-tokens", "1", "--methods", "baseline,vtw", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "note: shrunk: decoder 16 layers x width 512 (8 heads) instead of 32 x 4096 (32 heads)" in res.output
    data = json.loads(out.read_text())
    assert data["model"]["shrunk"]["layers"] == [32, 16]
    assert data["model"]["num_layers"] == 16


def test_plain_bench_notes_the_testbed_is_overhead_bound(tmp_path):
    res = cli.invoke(app, ["bench", "--limit", "1", "--warmup", "0", "--max-new-tokens", "1", "--methods", "baseline,vtw",
                           "--k", "3"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "overhead-bound" in res.output and "vtw bench --model llava-1.5-7b --random-init --shrink" in res.output
