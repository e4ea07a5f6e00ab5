"""--memory-budget parsing and the analytic memory model, checked against real caches."""

from __future__ import annotations

import pytest
import torch

from vtwcli.bench.budget import (
    Geometry,
    check_budget,
    kept_tokens_per_layer,
    parse_memory_budget,
    predict,
    weights_bytes,
    weights_bytes_from_config,
)
from vtwcli.bench.kvcache import cache_bytes, layer_seq_lengths
from vtwcli.bench.shaped import llava_shaped
from vtwcli.engine import withdraw
from vtwcli.errors import UsageError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20GiB", 20 * 1024**3),
        ("512MiB", 512 * 1024**2),
        ("1.5GB", 1_500_000_000),
        ("24G", 24 * 1024**3),
        (" 2 gib ", 2 * 1024**3),
        ("64KiB", 65536),
        ("100B", 100),
        (".5TiB", 512 * 1024**3),
        (4096, 4096),
    ],
)
def test_budget_sizes(text, expected):
    assert parse_memory_budget(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "20", "20XB", "-1GiB", "0GiB", "1.2.3GB", "GiB", "20 Gi B", 1.5, True])
def test_unparsable_budgets_are_one_clear_error(text):
    with pytest.raises(UsageError, match="--memory-budget") as info:
        parse_memory_budget(text)
    assert "\n" not in str(info.value)


def test_budget_below_the_weights_is_refused():
    with pytest.raises(UsageError, match=r"below the 2\.00 GiB .*give a budget above"):
        check_budget(parse_memory_budget("1GiB"), 2 * 1024**3, model_name="m")
    check_budget(parse_memory_budget("3GiB"), 2 * 1024**3)  # fine


@pytest.fixture(scope="module")
def shaped():
    return llava_shaped(hidden_size=64, num_layers=4, heads=2, vision_hidden=32)


def test_weights_bytes_counts_every_parameter_once(shaped):
    model = shaped.model
    by_hand = sum(p.numel() * p.element_size() for p in model.parameters())
    by_hand += sum(b.numel() * b.element_size() for b in model.buffers())
    assert weights_bytes(model) == by_hand
    # the meta-device count from the config alone agrees with the built model
    assert weights_bytes_from_config(model.config, torch.float32) == by_hand


def _generate(loaded, inputs, new, method=None, k=2, ratio=0.5):
    import contextlib

    ctx = contextlib.nullcontext() if method in (None, "baseline") else withdraw(loaded.model, k, method=method, ratio=ratio)
    with ctx, torch.inference_mode():
        out = loaded.model.generate(**inputs, max_new_tokens=new, min_new_tokens=new, do_sample=False,
                                    return_dict_in_generate=True, pad_token_id=loaded.tokenizer.pad_token_id)
    return getattr(out, "cache", None) or out.past_key_values


@pytest.mark.parametrize("method", ["baseline", "vtw", "fastv", "rand"])
def test_kept_tokens_per_layer_equal_the_real_cache_for_a_padded_batch(shaped, method):
    from PIL import Image

    img = Image.new("RGB", (64, 48), (120, 130, 140))
    prompts = ["short question", "a much longer question with quite a few more words in it than the other"]
    inputs = shaped.prepare(prompts, images=[[img], [img]])
    lengths = inputs["attention_mask"].sum(1).tolist()
    assert lengths[0] != lengths[1]  # rows really are padded
    vision = [int((row == shaped.model.config.image_token_id).sum()) for row in inputs["input_ids"]]
    assert vision == [576, 576]
    new = 3
    cache = _generate(shaped, inputs, new, method, k=2, ratio=0.5)
    per_row = [kept_tokens_per_layer(method, num_layers=4, prompt_tokens=n, vision_tokens=v, new_tokens=new, k=2)
               for n, v in zip(lengths, vision, strict=True)]  # fmt: skip
    expected = [max(col) for col in zip(*per_row, strict=True)]
    got = layer_seq_lengths(cache)
    assert got == expected
    if method != "baseline":  # withdrawal really shortened the later layers
        assert got[2] < got[1]


def test_prediction_kv_is_the_returned_cache_and_max_batch_is_the_largest_that_fits(shaped):
    from PIL import Image

    inputs = shaped.prepare("what is in the picture", images=[Image.new("RGB", (64, 48))])
    p = int(inputs["input_ids"].shape[1])
    geo = Geometry.from_config(shaped.model.config, element_size=4)
    preds = {}
    for method in ("baseline", "vtw", "fastv"):
        cache = _generate(shaped, inputs, 4, method, k=2)
        pred = predict(geo, method, prompt_tokens=p, vision_tokens=576, new_tokens=4, k=2)
        assert pred.kv_end_bytes == cache_bytes(cache)
        preds[method] = pred
    assert preds["vtw"].kv_end_bytes < preds["fastv"].kv_end_bytes < preds["baseline"].kv_end_bytes
    assert preds["vtw"].per_sample_bytes <= preds["fastv"].per_sample_bytes < preds["baseline"].per_sample_bytes
    base = preds["baseline"]
    fixed = 10_000_000
    for budget in (fixed + 1, fixed + base.per_sample_bytes, fixed + 7 * base.per_sample_bytes - 1, 10**9):
        pred = predict(geo, "baseline", prompt_tokens=p, vision_tokens=576, new_tokens=4, fixed_bytes=fixed,
                       budget_bytes=budget)  # fmt: skip
        brute = max(b for b in range(0, 10_000) if fixed + b * base.per_sample_bytes <= budget)
        assert pred.max_batch == brute
