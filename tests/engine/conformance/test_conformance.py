"""Conformance: every verified family follows the one withdrawal rule, checked against
reference.py (the unmodified model in eager mode with the withdrawn key columns masked in
layers >= K, non-attention mixers fed the kept rows only), never against the engine itself.

Each family is built tiny from its own transformers config class (families.py); a family whose
classes the installed transformers lacks is skipped with the missing class named. Every
equality comes with a check that withdrawal moved the logits.
"""

from __future__ import annotations

import functools

import families as F
import pytest
import reference as R
import torch

import vtwcli
from vtwcli.archs import VERIFIED, records
from vtwcli.errors import UnsupportedModelError

torch.set_num_threads(1)
N = 4  # decoder layers of every tiny model
ATOL = 2e-4
MOVES = 0.25  # withdrawal must move the logits by more than this
FASTV_MOVES = 0.05  # FastV keeps half the vision tokens: the logits move less

VERIFIED_TYPES = [r.model_type for r in records() if r.status == VERIFIED and r.model_type in F.FAMILIES]
FAMS = [pytest.param(t, id=t) for t in VERIFIED_TYPES]
ATTNS = [pytest.param(a, id=a) for a in ("eager", "sdpa")]


model = functools.partial(F.model_or_skip, num_layers=N)  # cached; a skip names what is missing
ks = functools.partial(F.two_ks, num_layers=N)  # the smallest K the family allows and N - 1


# generated tokens never take a special id (a placeholder in a cache-free prompt would be an image)
SUPPRESS = list(range(F.TEXT_HIGH, F.VOCAB))


def _gen(m, batch, n, **kw):
    return m.generate(**batch, max_new_tokens=n, min_new_tokens=n, do_sample=False, return_dict_in_generate=True,
                      suppress_tokens=SUPPRESS, **kw)


def _ref(model_type, batch, k, drop):
    fam = F.FAMILIES[model_type]
    return R.reference_logits(model(model_type, "eager"), batch, k, drop, mixers=fam.mixers, deepstack=fam.deepstack)


@pytest.mark.parametrize("attn", ATTNS)
@pytest.mark.parametrize("mt", FAMS)
@torch.no_grad()
def test_k_equals_n_is_bit_identical(mt, attn):
    m = model(mt, attn)
    batch = F.inputs(m, rows=(0, 1))
    base = m(**batch).logits
    base_tokens = _gen(m, batch, 3).sequences
    with vtwcli.withdraw(m, k=N):
        got = m(**batch).logits
        tokens = _gen(m, batch, 3).sequences
    assert torch.equal(got, base)
    assert torch.equal(tokens, base_tokens)


@pytest.mark.parametrize("attn", ATTNS)
@pytest.mark.parametrize("mt", FAMS)
@torch.no_grad()
def test_prefill_logits_match_the_reference_at_two_ks(mt, attn):
    m = model(mt, attn)
    batch = F.inputs(m, rows=(1,))
    vision = F.vision_mask(batch)
    full = _ref(mt, batch, N, None)
    # the reference without withdrawal is the model itself
    torch.testing.assert_close(m(**batch).logits, full, atol=ATOL, rtol=0)
    for k in ks(mt):
        expected = _ref(mt, batch, k, vision)
        with vtwcli.withdraw(m, k=k) as handle:
            got = m(**batch).logits  # [1, T, V]: the kept rows
        kept = ~vision[0]
        assert handle.last_prefill.kept == [int(kept.sum())]
        torch.testing.assert_close(got[0], expected[0, kept], atol=ATOL, rtol=0, msg=f"K={k}")
        moved = (expected[0, kept] - full[0, kept]).abs().max()
        assert moved > MOVES, f"K={k}: withdrawal moved the kept rows' logits by only {moved:.3g}"


@pytest.mark.parametrize("attn", ATTNS)
@pytest.mark.parametrize("mt", FAMS)
@torch.no_grad()
@pytest.mark.parametrize("which", ["first_k", "last_k"])
def test_cached_greedy_generation_matches_cache_free_reference(mt, attn, which):
    m = model(mt, attn)
    k = ks(mt)[0 if which == "first_k" else -1]
    batch = F.inputs(m, rows=(0,))
    vision = F.vision_mask(batch)
    prompt_len, n_vision = vision.shape[1], int(vision.sum())
    steps = 6
    expected, cur = [], batch
    for _ in range(steps):
        drop = torch.cat([vision, vision.new_zeros(1, cur["input_ids"].shape[1] - prompt_len)], 1)
        expected.append(int(_ref(mt, cur, k, drop)[0, -1, : F.TEXT_HIGH].argmax()))
        cur = R.extend(cur, expected[-1], **F.extend_kwargs(mt))
    with vtwcli.withdraw(m, k=k):
        out = _gen(m, batch, steps)
    assert out.sequences[0, prompt_len:].tolist() == expected

    # the cache of every attention layer >= K holds no vision position; layers < K hold all
    cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
    seen = steps - 1  # the last generated token is never fed back
    types = R.layer_types(m)
    checked = 0
    for i, layer in enumerate(cache.layers):
        if types[i] in ("linear_attention", "conv") or not hasattr(layer, "get_seq_length"):
            continue
        want = prompt_len + seen if i < k else prompt_len - n_vision + seen
        assert layer.get_seq_length() == want, f"layer {i}: {layer.get_seq_length()} positions, expected {want}"
        if i >= k and types[i] == "full_attention":
            assert layer.keys.shape[-2] == want
        checked += int(i >= k)
    # (KV-shared layers own no cache entry: Gemma 4's last layers hold a DummyLayer)
    owners = [i for i in range(k, len(cache.layers)) if hasattr(cache.layers[i], "get_seq_length")]
    if any(types[i] not in ("linear_attention", "conv") for i in owners):
        assert checked > 0, "no attention layer after K was checked"


@pytest.mark.parametrize("method", ["vtw", "rand", "fastv", "fastv-mask"])
@pytest.mark.parametrize("attn", ATTNS)
@pytest.mark.parametrize("mt", FAMS)
@torch.no_grad()
def test_each_row_of_a_left_padded_batch_equals_that_prompt_alone(mt, attn, method):
    m = model(mt, attn)
    k = F.FAMILIES[mt].min_k if method == "vtw" else F.smallest_k(m, mt, method, N)
    moves = FASTV_MOVES if method.startswith("fastv") else MOVES
    variants = (0, 1, 2)
    batch = F.inputs(m, rows=variants)
    assert len(set(batch["attention_mask"].sum(1).tolist())) == len(variants)
    base = m(**batch).logits[:, -1]
    with vtwcli.withdraw(m, k=k, method=method, ratio=0.5) as handle:
        logits = m(**batch).logits[:, -1]
        seqs = _gen(m, batch, 4).sequences
        kept = handle.last_prefill.kept
        for b, v in enumerate(variants):
            alone = F.inputs(m, rows=(v,))
            torch.testing.assert_close(logits[b], m(**alone).logits[0, -1], atol=ATOL, rtol=0)
            assert handle.last_prefill.kept == [kept[b]]
            new_alone = _gen(m, alone, 4).sequences[0, alone["input_ids"].shape[1]:]
            assert seqs[b, batch["input_ids"].shape[1]:].tolist() == new_alone.tolist()
    assert (logits - base).abs().max() > moves


@pytest.mark.parametrize("method", ["rand", "fastv"])
@pytest.mark.parametrize("mt", FAMS)
@torch.no_grad()
def test_rand_and_fastv_follow_the_same_rule_with_their_kept_set(mt, method):
    m = model(mt, "eager")
    k = F.FAMILIES[mt].min_k
    batch = F.inputs(m, rows=(2,))
    with vtwcli.withdraw(m, k=k, method=method, seed=3, ratio=0.5) as handle:
        got = m(**batch).logits
    keep = handle.last_prefill.keep_mask.to(batch["input_ids"].device)
    vision = F.vision_mask(batch)
    if method == "fastv":  # some vision tokens kept, some withdrawn, every text token kept
        assert bool((keep & vision).any()) and bool((~keep & vision).any()) and bool(keep[~vision].all())
    expected = _ref(mt, batch, k, ~keep)
    torch.testing.assert_close(got[0], expected[0, keep[0]], atol=ATOL, rtol=0)
    # FastV keeps half the vision tokens: the logits move less than with VTW, still far past ATOL
    moved = (expected[0, keep[0]] - _ref(mt, batch, N, None)[0, keep[0]]).abs().max()
    assert moved > (MOVES if method == "rand" else FASTV_MOVES), f"{method} moved the logits by only {moved:.3g}"


def test_every_family_is_verified_here_or_refused_with_a_reason():
    legacy = {"llava", "llava_next", "qwen2_vl", "qwen2_5_vl", "video_llava", "internvl"}  # tests/engine/test_engine.py
    for rec in records():
        if rec.status == VERIFIED:
            assert rec.model_type in F.FAMILIES or rec.model_type in legacy, f"{rec.model_type}: verified by no test"
        else:
            assert rec.refusal and "\n" not in rec.refusal


@pytest.mark.parametrize("rec", [pytest.param(r, id=r.model_type) for r in records() if r.status != VERIFIED])
def test_a_refused_family_is_refused_with_its_reason(rec):
    class Stub(torch.nn.Module):
        pass

    stub = Stub()
    stub.config = type("Cfg", (), {"model_type": rec.model_type})()
    with pytest.raises(UnsupportedModelError, match="not supported") as err:
        vtwcli.withdraw(stub, k=1).__enter__()
    assert rec.refusal in str(err.value)


def _config_only(model_type, attn="eager"):
    """A model object carrying only a tiny config (the engine checks everything before it
    touches a module)."""
    stub = torch.nn.Module()
    stub.config = F.FAMILIES[model_type].make_config(N)
    stub.config.get_text_config(decoder=True)._attn_implementation = attn
    return stub


def test_a_hybrid_decoder_refuses_k_before_its_first_attention_layer():
    from vtwcli.errors import KOutOfRangeError

    if F.missing(F.FAMILIES["qwen3_5"]):
        pytest.skip(F.missing(F.FAMILIES["qwen3_5"]))
    with pytest.raises(KOutOfRangeError, match="first attention layer .1.*Choose K between 2 and 4"):
        vtwcli.withdraw(_config_only("qwen3_5"), k=1).__enter__()


def test_fastv_refuses_a_k_whose_previous_layer_has_no_attention():
    from vtwcli.errors import UsageError

    if F.missing(F.FAMILIES["qwen3_5"]):
        pytest.skip(F.missing(F.FAMILIES["qwen3_5"]))
    with pytest.raises(UsageError, match="layer 2 .*has no attention"):
        vtwcli.withdraw(_config_only("qwen3_5"), k=3, method="fastv").__enter__()


@pytest.mark.parametrize("mt", ["gemma3", "paligemma"])
def test_flash_attention_with_windows_or_blocks_after_k_is_refused(mt):
    if F.missing(F.FAMILIES[mt]):
        pytest.skip(F.missing(F.FAMILIES[mt]))
    with pytest.raises(UnsupportedModelError, match="flash_attention_2.*original"):
        vtwcli.withdraw(_config_only(mt, "flash_attention_2"), k=1).__enter__()


def test_kv_sharing_derived_for_older_transformers_matches_the_config():
    # transformers 5.24 lists Gemma 4's kv_sharing_modes; older releases leave the engine to derive them
    from vtwcli.engine.core import _kv_sharing_modes

    if F.missing(F.FAMILIES["gemma4"]):
        pytest.skip(F.missing(F.FAMILIES["gemma4"]))
    config = F.FAMILIES["gemma4"].make_config(6)
    arch = vtwcli.get_arch(config)
    listed = getattr(config.get_text_config(decoder=True), "kv_sharing_modes", None)
    if listed is None:
        pytest.skip("this transformers release does not list kv_sharing_modes")
    text = config.get_text_config(decoder=True)

    class Older:  # the same config without the listing
        def __getattr__(self, name):
            if name == "kv_sharing_modes":
                raise AttributeError(name)
            return getattr(text, name)

    older = type("Cfg", (), {"get_text_config": lambda self, decoder=True: Older(), "model_type": "gemma4"})()
    assert _kv_sharing_modes(arch, older) == list(listed)
    assert "reuse" in listed and "store" in listed


@pytest.mark.parametrize("mt", FAMS)
@torch.no_grad()
def test_the_calibration_sweep_of_every_family_follows_the_rule(mt):
    # the fast sweep runs layers >= K by hand; for a family it cannot reproduce it must fall back
    # to the engine, so both sweeps agree, and the engine's KL is the reference's
    from vtwcli.calibrate.kl import withdrawal_kl
    from vtwcli.calibrate.sweep import fast_sweep, slow_sweep

    m = model(mt, "eager")
    lo = F.FAMILIES[mt].min_k
    candidates = list(range(lo, N + 1))
    batch = F.inputs(m, rows=(0, 1))
    fast = fast_sweep(m, batch, candidates)
    slow = slow_sweep(m, batch, candidates)
    for k in candidates:
        assert fast[k] == pytest.approx(slow[k], abs=1e-4), f"K={k}"
    alone = F.inputs(m, rows=(1,))
    full = _ref(mt, alone, N, None)[:, -1:]
    withdrawn = _ref(mt, alone, lo, F.vision_mask(alone))[:, -1:]
    expected = float(withdrawal_kl(withdrawn, full, "withdrawn||full").mean())
    assert fast[lo][1] == pytest.approx(expected, abs=1e-4)
    assert expected > 1e-3  # withdrawal changed the distribution


def test_calibration_candidates_start_past_a_hybrids_first_attention_layer():
    from vtwcli.calibrate.api import _k_floor, _k_range
    from vtwcli.errors import KOutOfRangeError

    if F.missing(F.FAMILIES["qwen3_5"]):
        pytest.skip(F.missing(F.FAMILIES["qwen3_5"]))
    stub = _config_only("qwen3_5")
    assert _k_floor(stub) == 2
    assert _k_range(None, None, N, floor=_k_floor(stub)) == [2, 3, 4]  # the default starts at the floor
    with pytest.raises(KOutOfRangeError, match="--k-min must be in 2..4.*first attention layer"):
        _k_range(1, None, N, floor=2)
