"""Conformance beyond the prefill for the methods with their own kept set: ``fastv-mask``
(FastV's masking implementation) everywhere, and in-place ``fastv`` and ``rand`` in cached
decoding, on the tiny families.

reference.py already is a masking implementation: the unmodified model, cache-free, with the
pruned tokens' key columns masked in every attention layer >= K for every query but their own.
So for ``fastv-mask`` every row, pruned ones included, must equal the reference, every layer's
cache holds the whole timeline, and a decoder with a layer after K that has no attention is
refused. In-place ``fastv`` and ``rand`` (whose prefill the main conformance suite checks) must
give the same greedy tokens as the reference, with the cache, over several steps. Padded batches
for every method are in test_conformance.py.
"""

from __future__ import annotations

import functools

import families as F
import pytest
import reference as R
import torch

import vtwcli
from vtwcli.archs import VERIFIED, records
from vtwcli.errors import UsageError

torch.set_num_threads(1)
N = 4
ATOL = 2e-4
MOVES = 0.05  # half the vision tokens kept: the logits move less than with VTW, still far past ATOL
RATIO = 0.5
SUPPRESS = list(range(F.TEXT_HIGH, F.VOCAB))

ATTENTION_ONLY = [r.model_type for r in records() if r.status == VERIFIED and r.model_type in F.FAMILIES
                  and not F.FAMILIES[r.model_type].mixers]
FAMS = [pytest.param(t, id=t) for t in ATTENTION_ONLY]
# decoding: every verified family (fastv-mask is refused on hybrids; tested below)
EVERY = [pytest.param(r.model_type, id=r.model_type) for r in records()
         if r.status == VERIFIED and r.model_type in F.FAMILIES]
ATTNS = [pytest.param(a, id=a) for a in ("eager", "sdpa")]
# rand (the paper's random-token ablation) withdraws in place like fastv, with its own kept set
METHODS = [pytest.param(m, id=m) for m in ("fastv-mask", "fastv", "rand")]


model = functools.partial(F.model_or_skip, num_layers=N)  # cached; a skip names what is missing
ks = functools.partial(F.two_ks, num_layers=N)  # the smallest K the family allows and N - 1


def _ref(mt, batch, k, drop, m=None):
    fam = F.FAMILIES[mt]
    m = m if m is not None else model(mt, "eager")
    return R.reference_logits(m, batch, k, drop, mixers=fam.mixers, deepstack=fam.deepstack)


def _gen(m, batch, n):
    return m.generate(**batch, max_new_tokens=n, min_new_tokens=n, do_sample=False, return_dict_in_generate=True,
                      suppress_tokens=SUPPRESS)



@pytest.mark.parametrize("attn", ATTNS)
@pytest.mark.parametrize("mt", FAMS)
@torch.no_grad()
def test_every_row_of_the_prefill_equals_the_masking_reference(mt, attn):
    m = model(mt, attn)
    batch = F.inputs(m, rows=(2,))
    vision = F.vision_mask(batch)
    full = _ref(mt, batch, N, None)
    for k in ks(mt):
        with vtwcli.withdraw(m, k=k, method="fastv", ratio=RATIO) as handle:
            inplace_last = m(**batch).logits[0, -1]
            inplace_keep = handle.last_prefill.keep_mask
        with vtwcli.withdraw(m, k=k, method="fastv-mask", ratio=RATIO) as handle:
            got = m(**batch).logits
        keep = handle.last_prefill.keep_mask
        assert torch.equal(keep, inplace_keep), "the same kept set as in-place fastv"
        pruned = vision & ~keep
        assert bool(pruned.any()) and bool((vision & keep).any())
        assert handle.last_prefill.kept == [int(keep.sum())]
        expected = _ref(mt, batch, k, pruned)
        assert got.shape == expected.shape and bool(torch.isfinite(got).all())
        torch.testing.assert_close(got, expected, atol=ATOL, rtol=0, msg=f"K={k}")
        # the last token sees what it sees under in-place fastv
        torch.testing.assert_close(got[0, -1], inplace_last, atol=ATOL, rtol=0)
        moved = (expected[0, -1] - full[0, -1]).abs().max()
        assert moved > MOVES, f"K={k}: pruning moved the last logits by only {moved:.3g}"


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("attn", ATTNS)
@pytest.mark.parametrize("mt", EVERY)
@torch.no_grad()
def test_cached_greedy_decoding_equals_the_cache_free_reference(mt, attn, method):
    m = model(mt, attn)
    k = F.smallest_k(m, mt, method, N)
    batch = F.inputs(m, rows=(0,))
    with vtwcli.withdraw(m, k=k, method=method, ratio=RATIO) as handle:
        m(**batch)
        # what layers >= K no longer see: pruned vision tokens (FastV) or random prompt tokens (rand)
        pruned = batch["attention_mask"].bool() & ~handle.last_prefill.keep_mask
    prompt_len = pruned.shape[1]
    assert bool(pruned.any())
    steps = 6
    expected, cur = [], batch
    for _ in range(steps):
        drop = torch.cat([pruned, pruned.new_zeros(1, cur["input_ids"].shape[1] - prompt_len)], 1)
        expected.append(int(_ref(mt, cur, k, drop)[0, -1, : F.TEXT_HIGH].argmax()))
        cur = R.extend(cur, expected[-1], **F.extend_kwargs(mt))
    with vtwcli.withdraw(m, k=k, method=method, ratio=RATIO):
        out = _gen(m, batch, steps)
    assert out.sequences[0, prompt_len:].tolist() == expected
    if method != "fastv-mask":
        return  # in place, the cache after K holds the kept tokens only (tests/engine/test_fastv_mask.py compares)

    # fastv-mask: every attention layer's cache holds the whole timeline (the baseline's), before and after K
    cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
    base = _gen(m, batch, steps)
    base_cache = base.cache if getattr(base, "cache", None) is not None else base.past_key_values
    seen = steps - 1
    checked = 0
    for i, (layer, ref_layer) in enumerate(zip(cache.layers, base_cache.layers, strict=True)):
        if not hasattr(layer, "get_seq_length"):
            continue  # a KV-shared layer owns no cache entry
        assert layer.get_seq_length() == ref_layer.get_seq_length() == prompt_len + seen, f"layer {i}"
        assert layer.keys.shape == ref_layer.keys.shape, f"layer {i}"
        checked += int(i >= k)
    assert checked > 0


def _config_only(model_type, types=None):
    stub = torch.nn.Module()
    stub.config = F.FAMILIES[model_type].make_config(N)
    text = stub.config.get_text_config(decoder=True)
    text._attn_implementation = "eager"
    if types is not None:
        text.layer_types = types
    return stub


@pytest.mark.parametrize("mt", ["qwen3_5", "lfm2_vl"])
def test_a_layer_without_attention_after_k_is_refused(mt):
    if F.missing(F.FAMILIES[mt]):
        pytest.skip(F.missing(F.FAMILIES[mt]))
    stub = _config_only(mt)
    k = 2 if mt == "qwen3_5" else 1  # layer K-1 attends, a later one does not
    after = "layer 2 " if mt == "qwen3_5" else "layers 1, 3 "
    with pytest.raises(UsageError, match=f"fastv-mask masks .*{after}.*cannot mask a token out.*--method fastv"):
        vtwcli.withdraw(stub, k=k, method="fastv-mask").__enter__()
    assert k in vtwcli.engine.accepted_ks(stub, "fastv")  # in-place fastv runs them on the kept rows
    assert vtwcli.engine.accepted_ks(stub, "fastv-mask") == [N]


@torch.no_grad()
def test_a_hybrid_whose_layers_without_attention_all_come_before_k_runs(monkeypatch):
    fam = F.FAMILIES["qwen3_5"]
    if F.missing(fam):
        pytest.skip(F.missing(fam))
    monkeypatch.setattr(F, "_qwen3_5_types", lambda n: ["linear_attention"] + ["full_attention"] * (n - 1))
    m = F.build("qwen3_5", "eager", num_layers=N)
    assert R.layer_types(m)[0] == "linear_attention"
    batch = F.inputs(m, rows=(2,))
    with vtwcli.withdraw(m, k=2, method="fastv-mask", ratio=RATIO) as handle:
        got = m(**batch).logits
    pruned = F.vision_mask(batch) & ~handle.last_prefill.keep_mask
    assert bool(pruned.any())
    expected = _ref("qwen3_5", batch, 2, pruned, m=m)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)
    assert (expected[0, -1] - _ref("qwen3_5", batch, N, None, m=m)[0, -1]).abs().max() > MOVES
