"""Architecture-exact FLOPs against torch.utils.flop_counter.FlopCounterMode on tiny decoders.

Each registered alias's shipped text config is shrunk (same family, layer pattern, windows,
heads ratio, experts, linear-attention and convolution layers; tiny widths), its text
decoder is built in eager mode and run on random tokens under FlopCounterMode, and the
count derived from the config must agree within TOLERANCE, per layer, before and after
withdrawal at K. The "after K" reference is measured too: layer i < K is measured on all
s tokens, layer i >= K on the s - n_vis kept tokens (a dense layer's cost depends on how
many tokens it runs, not which).
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from vtwcli.bench.exact_flops import (
    attention_pairs,
    decoder_shape,
    exact_prefill_flops,
    kept_positions,
    layer_flops,
)
from vtwcli.bench.flops import prefill_flops
from vtwcli.errors import UsageError
from vtwcli.models import SPECS, config_from_dict, shipped_config_dict

torch.set_num_threads(1)
TOLERANCE = 0.02  # relative, per layer and in total
LAYERS = 4
WINDOW = 8  # sliding windows shrunk below the prompt length, so they bind


def tiny_text_config(alias: str) -> dict:
    """The alias's text config with tiny sizes (and its layer pattern kept)."""
    cfg = copy.deepcopy(shipped_config_dict(alias))
    text = cfg["text_config"]
    heads, kv, head_dim = 4, 2, 16
    text.update(hidden_size=64, intermediate_size=96, num_hidden_layers=LAYERS, num_attention_heads=heads,
                num_key_value_heads=kv, vocab_size=256, max_position_embeddings=512)
    if "head_dim" in text:
        text["head_dim"] = head_dim
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        text.pop(key, None)
    if text.get("layer_types"):
        pattern = text["layer_types"]
        kinds = list(dict.fromkeys(pattern))  # keep every kind of layer the model has
        text["layer_types"] = (kinds * LAYERS)[:LAYERS]
    if "full_attn_idxs" in text:
        text["full_attn_idxs"] = [i for i, t in enumerate(text["layer_types"]) if t == "full_attention"]
    if text.get("sliding_window"):
        text["sliding_window"] = WINDOW
    rope = text.get("rope_parameters") or {}
    if "mrope_section" in rope:
        half = int(head_dim * rope.get("partial_rotary_factor", 1.0)) // 2
        rope["mrope_section"] = [half - 2 * (half // 3), half // 3, half // 3]
    if "num_experts" in text:
        text.update(num_experts=8, num_experts_per_tok=2, moe_intermediate_size=32)
    if "linear_num_value_heads" in text:
        text.update(linear_num_value_heads=4, linear_num_key_heads=2, linear_key_head_dim=16, linear_value_head_dim=16)
    if "block_multiple_of" in text:
        text["block_multiple_of"] = 16
    return text


def _build(text: dict):
    from transformers import AutoModel

    config = config_from_dict(text)
    torch.manual_seed(0)
    # eager experts: FlopCounterMode has no formula for the grouped matmul of the fused MoE path (it counts 0)
    kwargs = {"experts_implementation": "eager"} if "num_experts" in text else {}
    model = AutoModel.from_config(config, attn_implementation="eager", **kwargs)
    return model.eval(), config


def _measured_per_layer(model, n: int) -> list[float]:
    ids = torch.randint(3, 250, (1, n), generator=torch.Generator().manual_seed(n))
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(input_ids=ids, use_cache=False)
    counts = counter.get_flop_counts()
    root = type(model).__name__
    return [float(sum(counts.get(f"{root}.layers.{i}", {}).values())) for i in range(len(model.layers))]


ALIASES = sorted(SPECS)


@pytest.mark.parametrize("alias", ALIASES)
def test_dense_count_matches_flop_counter_before_and_after_withdrawal(alias):
    model, config = _build(tiny_text_config(alias))
    s, n_vis, vis_start, k = 40, 24, 5, 2
    full = _measured_per_layer(model, s)
    short = _measured_per_layer(model, s - n_vis)
    shape = decoder_shape(config)
    assert shape.num_layers == LAYERS and shape.per_token_outside == 0
    positions = list(range(s))
    kept = kept_positions("vtw", s, n_vis, vis_start)
    for i, layer in enumerate(shape.layers):
        assert full[i] > 0
        assert layer_flops(layer, positions, "dense") == pytest.approx(full[i], rel=TOLERANCE), f"layer {i} full"
        assert layer_flops(layer, kept, "dense") == pytest.approx(short[i], rel=TOLERANCE), f"layer {i} kept"
    before = exact_prefill_flops(config, "baseline", s=s, n_vis=n_vis, vis_start=vis_start, attention="dense")
    after = exact_prefill_flops(config, "vtw", s=s, n_vis=n_vis, k=k, vis_start=vis_start, attention="dense")
    assert before == pytest.approx(sum(full), rel=TOLERANCE)
    assert after == pytest.approx(sum(full[:k]) + sum(short[k:]), rel=TOLERANCE)
    assert after < before


def _attended_pairs_by_probabilities(model, n: int) -> list[int]:
    """Nonzero attention probabilities of head 0 in each attention layer (eager: masked entries are exactly 0)."""
    ids = torch.randint(3, 250, (1, n), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=False, output_attentions=True)
    return [int((a[0, 0] > 0).sum()) if a is not None else None for a in out.attentions]


@pytest.mark.parametrize("alias", ["gemma-3-4b-it", "paligemma2-3b", "aya-vision-8b", "qwen3-vl-2b"])
def test_attended_pairs_match_the_models_own_mask(alias):
    """Causal and sliding-window pair counts equal what the model's own mask lets through."""
    model, config = _build(tiny_text_config(alias))
    n = 30
    measured = _attended_pairs_by_probabilities(model, n)
    shape = decoder_shape(config)
    windows = [layer.window for layer in shape.layers]
    if alias != "qwen3-vl-2b":
        assert WINDOW in windows and None in windows, "the tiny model must mix windowed and global layers"
    for i, layer in enumerate(shape.layers):
        assert attention_pairs(list(range(n)), layer.window) == measured[i], f"layer {i}"


def _pairs_brute_force(positions, window):
    p = torch.tensor(positions)
    allowed = p[None, :] <= p[:, None]
    if window is not None:
        allowed &= p[None, :] > p[:, None] - window
    return int(allowed.sum())


@pytest.mark.parametrize("window", [None, 1, 3, 8, 100])
def test_attended_pairs_after_withdrawal_count_original_positions(window):
    kept = kept_positions("vtw", 60, 30, 10)
    assert kept == list(range(10)) + list(range(40, 60))
    assert attention_pairs(kept, window) == _pairs_brute_force(kept, window)
    fastv = kept_positions("fastv", 60, 30, 10, ratio=0.5)
    assert len(fastv) == 45 and attention_pairs(fastv, window) == _pairs_brute_force(fastv, window)


def test_withdrawal_saves_less_when_windows_already_bound_the_cost():
    """A windowed layer's attention grows linearly with s, so dropping tokens saves less than a global one."""
    cfg = shipped_config_dict("gemma-3-4b-it")
    shape = decoder_shape(cfg)
    sliding = next(layer for layer in shape.layers if layer.window)
    full = next(layer for layer in shape.layers if layer.window is None)
    s, n_vis = 3000, 2000
    kept = kept_positions("vtw", s, n_vis, 10)
    every = list(range(s))
    core = lambda layer, pos: layer_flops(layer, pos) - len(pos) * layer.per_token  # noqa: E731
    assert core(sliding, kept) / core(sliding, every) > core(full, kept) / core(full, every)


def test_full_size_counts_differ_from_the_papers_formula_where_they_should():
    """LLaVA-1.5-7B is the paper's own case (dense MHA, gated MLP of 11008 ~ 8h^2 in all): the two counts
    agree; a GQA model does not."""
    s, n_vis = 641, 576
    def ratio(alias):
        cfg = shipped_config_dict(alias)
        text = cfg["text_config"]
        exact = exact_prefill_flops(cfg, "baseline", s=s, n_vis=n_vis, vis_start=5, attention="dense")
        paper = prefill_flops("baseline", s=s, n_vis=n_vis, hidden_size=text["hidden_size"],
                              num_layers=text["num_hidden_layers"])
        return exact / paper
    # 7B: attention 4h^2 + dense scores 2s^2h per layer match; MLP 3*h*11008 = 8.06h^2 vs the paper's 8h^2
    assert ratio("llava-1.5-7b") == pytest.approx(1.0, abs=0.01)
    # Qwen3-VL-8B: GQA (8 of 32 KV heads) makes attention 2.5h^2 instead of 4h^2; the gated MLP is 9h^2, not 8h^2
    assert ratio("qwen3-vl-8b") == pytest.approx(0.96, abs=0.01)


def test_full_size_per_token_counts_by_hand():
    """Per-token projection FLOPs of three full-size decoders, worked out by hand from their model cards."""
    # Qwen3-VL-30B-A3B: h=2048, 32 query heads and 4 KV heads of 128, router over 128 experts, 8 experts
    # of intermediate 768 (gated: 3 matrices) per token.
    h = 2048
    attn = h * 32 * 128 + 2 * h * 4 * 128 + 32 * 128 * h
    moe = h * 128 + 8 * 3 * h * 768
    layer = decoder_shape(shipped_config_dict("qwen3-vl-30b-a3b")).layers[0]
    assert layer.per_token == 2 * (attn + moe)
    assert layer.per_pair == 2 * 32 * (128 + 128)
    # Gemma-3-4B: h=2560, 8 query heads and 4 KV heads of 256, gated MLP 10240; 5 of 6 layers windowed (1024).
    h = 2560
    shape = decoder_shape(shipped_config_dict("gemma-3-4b-it"))
    assert shape.layers[0].per_token == 2 * (h * 8 * 256 + 2 * h * 4 * 256 + 8 * 256 * h + 3 * h * 10240)
    assert [layer.window for layer in shape.layers[:6]] == [1024] * 5 + [None]
    # Qwen3.5-9B, a linear-attention layer: qkv (2 x 16 key heads of 128 + 32 value heads of 128), z, b, a, out,
    # gated MLP 12288; a full-attention layer has a gated query projection (2 x 16 heads of 256).
    h = 4096
    shape = decoder_shape(shipped_config_dict("qwen3.5-9b"))
    linear, full = shape.layers[0], shape.layers[3]
    mlp = 3 * h * 12288
    assert (linear.mixer, full.mixer) == ("linear_attention", "attention")
    assert linear.per_token == 2 * (h * (2 * 2048 + 4096) + h * 4096 + 2 * h * 32 + 4096 * h + mlp)
    assert linear.conv == ((2 * 2048 + 4096, 4),)
    assert full.per_token == 2 * (h * 2 * 16 * 256 + 2 * h * 4 * 256 + 16 * 256 * h + mlp)


def test_bad_inputs_are_usage_errors():
    cfg = shipped_config_dict("qwen3-vl-2b")
    with pytest.raises(UsageError, match="K must be in 1..28"):
        exact_prefill_flops(cfg, "vtw", s=100, n_vis=50, k=29)
    with pytest.raises(UsageError, match="n_vis <= s"):
        exact_prefill_flops(cfg, "baseline", s=10, n_vis=50)
    with pytest.raises(UsageError, match="no FLOPs model"):
        exact_prefill_flops(cfg, "prune", s=100, n_vis=50, k=3)
    with pytest.raises(UsageError, match="attention mode"):
        exact_prefill_flops(cfg, "baseline", s=100, n_vis=50, attention="flash")


@pytest.mark.parametrize("arch", ["llava", "qwen2_vl"])
def test_count_matches_the_engines_withdrawn_prefill(arch):
    """The real VTW run: FlopCounterMode over a tiny multimodal model's prefill under the engine, per decoder
    layer, equals the count for all tokens below K and the kept text tokens from K on."""
    from tests.tiny import build_tiny_model, tiny_inputs, vision_mask
    from vtwcli.archs import get_arch
    from vtwcli.engine import withdraw

    model = build_tiny_model(arch, attn="eager", num_layers=4)
    inputs = tiny_inputs(model)
    s = inputs["input_ids"].shape[1]
    n_vis = int(vision_mask(model, inputs).sum())
    layers = get_arch(model).decoder_layers(model)
    first = next(name for name, module in model.named_modules() if module is layers[0])
    prefix = f"{type(model).__name__}.{first.rsplit('.', 1)[0]}"  # how FlopCounterMode names modules
    shape = decoder_shape(model)
    k = 2

    def measured():
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(**inputs, use_cache=False)
        counts = counter.get_flop_counts()
        return [float(sum(counts.get(f"{prefix}.{i}", {}).values())) for i in range(len(layers))]

    base = measured()
    with withdraw(model, k=k):
        withdrawn = measured()
    assert withdrawn[:k] == base[:k] and all(w < b for w, b in zip(withdrawn[k:], base[k:], strict=True))
    for i, layer in enumerate(shape.layers):
        n = s if i < k else s - n_vis
        assert layer_flops(layer, list(range(n)), "dense") == pytest.approx(withdrawn[i], rel=TOLERANCE)
