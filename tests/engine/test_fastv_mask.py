"""``fastv-mask``: FastV's masking implementation, on the tiny models of tests/tiny.py.

Its kept set is checked against a ranking read from eager attention weights, its logits against
engine_support's hand-run reference that physically deletes the pruned rows before layer K
(what the kept tokens must see), and its cache against the baseline's length. Never against
the engine itself.
"""

from __future__ import annotations

import engine_support as S
import pytest
import torch
from tiny import TINY_ARCHS

import vtwcli
from vtwcli.errors import UsageError

ARCHS = [pytest.param(a, id=a) for a in TINY_ARCHS]
ATTNS = [pytest.param(a, id=a) for a in ("eager", "sdpa")]
K = 2  # of 4 layers
RATIO = 0.5
MOVES = 0.05  # FastV keeps half the vision tokens: the logits move less than with VTW, still far past ATOL


def _generate(model, batch, n):
    return model.generate(**batch, max_new_tokens=n, min_new_tokens=n, do_sample=False, return_dict_in_generate=True)


@torch.no_grad()
def _expected_keep(model, batch, k, ratio):
    """FastV's kept set from eager attention weights of the same model (an independent path):
    every real text token plus the top round(n(1-R)) vision tokens by the last token's
    attention at layer k-1, averaged over heads."""
    vision = S.vision_of(model, batch)
    valid = batch["attention_mask"].bool()
    impl = vtwcli.get_arch(model).text_config(model.config)._attn_implementation
    if impl != "eager":
        model.set_attn_implementation("eager")
    try:
        scores = model(**batch, output_attentions=True).attentions[k - 1][:, :, -1, :].float().mean(1)
    finally:
        if impl != "eager":
            model.set_attn_implementation(impl)
    keep = valid & ~vision
    for b in range(vision.shape[0]):
        pos = (vision[b] & valid[b]).nonzero(as_tuple=True)[0]
        n_keep = round(pos.numel() * (1 - ratio))
        if n_keep:
            keep[b, pos[scores[b, pos].topk(n_keep).indices]] = True
    return keep, vision


@pytest.mark.parametrize("attn", ATTNS)
@pytest.mark.parametrize("arch", ARCHS)
@torch.no_grad()
def test_prefill_equals_the_reference_that_deletes_the_pruned_rows(arch, attn):
    model = S.make(arch, attn)
    batch = S.inputs(model, rows=(1,))
    keep, vision = _expected_keep(model, batch, K, RATIO)
    drop = (vision & ~keep)[0]
    assert bool(drop.any()) and bool((keep & vision).any()), "some vision tokens pruned, some kept"
    expected = S.reference_last_logits(model, batch, K, drop=drop)
    full = S.reference_last_logits(model, batch, K, drop=None)
    with vtwcli.withdraw(model, k=K, method="fastv-mask", ratio=RATIO) as handle:
        logits = model(**batch).logits
    # every row is still computed (the logits cover the whole prompt), and none is NaN
    assert logits.shape[1] == batch["input_ids"].shape[1]
    assert bool(torch.isfinite(logits).all())
    torch.testing.assert_close(logits[0, -1], expected, atol=S.ATOL, rtol=S.RTOL)
    assert (expected - full).abs().max() > max(MOVES, 10 * S.ATOL), "pruning must move the logits"
    stats = handle.last_prefill
    assert torch.equal(stats.keep_mask, keep.cpu())
    assert stats.kept == [int(keep.sum())]


@pytest.mark.parametrize("attn", ATTNS)
@pytest.mark.parametrize("arch", ARCHS)
@torch.no_grad()
def test_a_pruned_token_with_no_earlier_key_stays_finite(arch, attn):
    # R = 1 prunes every vision token; the prompt starts with one, so that token has no key but its own
    model = S.make(arch, attn)
    batch = S.inputs(model, rows=(0,))
    vision = S.vision_of(model, batch)[0]
    first = int(vision.nonzero()[0])
    cut = {k: (v[:, first:] if k in ("input_ids", "attention_mask", "mm_token_type_ids") else v)
           for k, v in batch.items()}
    if "position_ids" in cut or arch in ("qwen2_vl", "qwen2_5_vl"):
        pytest.skip("M-RoPE positions are computed from the whole prompt layout")
    drop = S.vision_of(model, cut)[0]
    assert bool(drop[0])
    expected = S.reference_last_logits(model, cut, K, drop=drop)
    with vtwcli.withdraw(model, k=K, method="fastv-mask", ratio=1.0):
        logits = model(**cut).logits
    assert bool(torch.isfinite(logits).all())
    torch.testing.assert_close(logits[0, -1], expected, atol=S.ATOL, rtol=S.RTOL)


@pytest.mark.parametrize("attn", ATTNS)
@pytest.mark.parametrize("arch", ARCHS)
@torch.no_grad()
def test_cached_greedy_decoding_equals_the_cache_free_reference_with_a_full_cache(arch, attn):
    model = S.make(arch, attn)
    batch = S.inputs(model, rows=(0,))
    keep, vision = _expected_keep(model, batch, K, RATIO)
    drop0 = (vision & ~keep)[0]
    prompt_len, n_pruned = vision.shape[1], int(drop0.sum())
    assert n_pruned > 0
    steps = 6
    expected, cur = [], batch
    for _ in range(steps):
        drop = torch.cat([drop0, drop0.new_zeros(cur["input_ids"].shape[1] - prompt_len)])
        token = int(S.reference_last_logits(model, cur, K, drop=drop).argmax())
        expected.append(token)
        cur = S.extend(cur, token)
    with vtwcli.withdraw(model, k=K, method="fastv-mask", ratio=RATIO):
        out = _generate(model, batch, steps)
    assert out.sequences[0, prompt_len:].tolist() == expected

    # every layer's cache holds the whole timeline, as the baseline's does; in-place fastv's
    # layers >= K hold only the kept tokens
    seen = steps - 1  # the last generated token is never fed back
    with vtwcli.withdraw(model, k=K, method="fastv", ratio=RATIO):
        inplace = _generate(model, batch, steps)
    for got, pruned in ((out, 0), (inplace, n_pruned)):
        cache = got.cache if getattr(got, "cache", None) is not None else got.past_key_values
        for i, layer in enumerate(cache.layers):
            want = prompt_len + seen if i < K else prompt_len - pruned + seen
            assert layer.keys.shape[-2] == want, f"layer {i}: {layer.keys.shape[-2]} positions, expected {want}"


@pytest.mark.parametrize("attn", ATTNS)
@pytest.mark.parametrize("arch", ARCHS)
@torch.no_grad()
def test_left_padded_batch_equals_each_prompt_alone(arch, attn):
    model = S.make(arch, attn)
    variants = (0, 1, 2)
    batch = S.inputs(model, rows=variants)
    assert len(set(batch["attention_mask"].sum(1).tolist())) == len(variants), "rows must differ in length"
    base = model(**batch).logits[:, -1]
    with vtwcli.withdraw(model, k=K, method="fastv-mask", ratio=RATIO) as handle:
        logits = model(**batch).logits[:, -1]
        seqs = _generate(model, batch, 4).sequences
        kept = handle.last_prefill.kept
        for b, v in enumerate(variants):
            alone = S.inputs(model, rows=(v,))
            torch.testing.assert_close(logits[b], model(**alone).logits[0, -1], atol=S.ATOL, rtol=S.RTOL)
            assert handle.last_prefill.kept == [kept[b]]
            new_alone = _generate(model, alone, 4).sequences[0, alone["input_ids"].shape[1]:]
            assert seqs[b, batch["input_ids"].shape[1]:].tolist() == new_alone.tolist()
    assert (logits - base).abs().max() > MOVES


@pytest.mark.parametrize("arch", ARCHS)
@torch.no_grad()
def test_the_mask_variant_and_in_place_fastv_give_the_kept_tokens_the_same_logits(arch):
    # the same K, R and kept set: the last token (always kept) sees the same tokens either way
    model = S.make(arch, "sdpa")
    batch = S.inputs(model, rows=(0, 1))
    with vtwcli.withdraw(model, k=K, method="fastv", ratio=RATIO) as handle:
        inplace = model(**batch).logits[:, -1]
        keep = handle.last_prefill.keep_mask
    with vtwcli.withdraw(model, k=K, method="fastv-mask", ratio=RATIO) as handle:
        masked = model(**batch).logits[:, -1]
        assert torch.equal(handle.last_prefill.keep_mask, keep)
    torch.testing.assert_close(masked, inplace, atol=S.ATOL, rtol=S.RTOL)


def test_positions_rearrange_is_refused_for_the_mask_variant():
    model = S.make("llava", "eager")
    with pytest.raises(UsageError, match="fastv-mask keeps every token.*nothing to renumber"):
        vtwcli.withdraw(model, k=K, method="fastv-mask", positions="rearrange").__enter__()
    assert vtwcli.engine.attached(model) is None


def test_an_attention_kernel_without_4d_masks_is_refused(monkeypatch):
    model = S.make("llava", "eager")
    cfg = vtwcli.get_arch(model).text_config(model.config)
    monkeypatch.setattr(cfg, "_attn_implementation", "flash_attention_2")
    with pytest.raises(UsageError, match="fastv-mask masks pruned tokens with a 4D attention mask.*sdpa"):
        vtwcli.withdraw(model, k=K, method="fastv-mask").__enter__()
    with pytest.raises(UsageError, match="fastv-mask ratio must be between 0 and 1"):
        vtwcli.withdraw(model, k=K, method="fastv-mask", ratio=1.5).__enter__()


@pytest.mark.parametrize("method", ["fastv", "fastv-mask"])
@pytest.mark.parametrize("attn", ATTNS)
@pytest.mark.parametrize("arch", ARCHS)
@torch.no_grad()
def test_a_static_cache_ranks_and_generates_what_the_dynamic_cache_does(arch, attn, method):
    # a static cache hands the attention kernel its whole (longer) buffer: FastV's ranking must
    # read this call's slots of it, not its tail
    model = S.make(arch, attn)
    batch = S.inputs(model, rows=(0, 1))
    with vtwcli.withdraw(model, k=K, method=method, ratio=RATIO) as handle:
        dynamic = _generate(model, batch, 4).sequences
        keep_dynamic = handle.last_prefill.keep_mask
        static = model.generate(**batch, max_new_tokens=4, min_new_tokens=4, do_sample=False,
                                cache_implementation="static")
        keep_static = handle.last_prefill.keep_mask
    assert torch.equal(keep_static, keep_dynamic)
    assert torch.equal(static, dynamic)
