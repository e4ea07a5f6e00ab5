"""KV-cache bytes read from real caches, against values computed here from shapes alone."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from tests.tiny import build_tiny_model, tiny_inputs, vision_mask
from vtwcli.bench.kvcache import analytic_cache_bytes, cache_bytes, layer_bytes, layer_seq_lengths


def test_hand_built_cache_counts_each_tensor_once():
    cache = DynamicCache()
    k = torch.zeros(1, 2, 5, 8)  # 80 floats = 320 bytes each for K and V
    cache.update(k, k.clone(), 0)
    cache.update(torch.zeros(1, 2, 3, 8, dtype=torch.float16), torch.zeros(1, 2, 3, 8, dtype=torch.float16), 1)
    assert layer_bytes(cache) == [2 * 320, 2 * 2 * 3 * 8 * 2]
    assert layer_seq_lengths(cache) == [5, 3]
    # the legacy layout: a tuple of (key, value) per layer; a shared tensor is counted once
    shared = torch.zeros(1, 1, 4, 4)
    assert cache_bytes(((shared, shared),)) == 64


@pytest.mark.parametrize("method,k", [("baseline", None), ("vtw", 2), ("vtw", 1), ("fastv", 2)])
def test_cache_after_generate_matches_the_shapes(method, k):
    from vtwcli.engine import withdraw

    model = build_tiny_model("llava", num_layers=4)
    inputs = tiny_inputs(model)
    n_vis = int(vision_mask(model, inputs).sum())
    prompt = int(inputs["attention_mask"].sum())
    new = 5
    ctx = withdraw(model, k, method=method, ratio=0.5) if method != "baseline" else torch.no_grad()
    with ctx, torch.no_grad():
        out = model.generate(
            **inputs, max_new_tokens=new, min_new_tokens=new, do_sample=False, return_dict_in_generate=True,
            pad_token_id=0,
        )
    cache = getattr(out, "cache", None) or out.past_key_values
    text = model.config.text_config
    per_token = 2 * text.num_key_value_heads * (text.hidden_size // text.num_attention_heads) * 4
    held = prompt + new - 1  # the last generated token is never fed back
    if method == "baseline":
        expected = [held] * 4
    elif method == "vtw":
        expected = [held] * k + [held - n_vis] * (4 - k)
    else:  # FastV keeps round((1 - R) * n_vis) of the vision tokens in layers >= K (FastV's rounding)
        expected = [held] * k + [held - (n_vis - round(n_vis * 0.5))] * (4 - k)
    assert layer_seq_lengths(cache) == expected
    assert cache_bytes(cache) == sum(expected) * per_token
    assert cache_bytes(cache) == analytic_cache_bytes(
        text, 4, tokens_full=held, tokens_short=expected[-1], k=k if k else None
    )
