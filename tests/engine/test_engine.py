"""Acceptance checks of the engine, for every supported architecture and attention implementation.

Every expected value comes from the unmodified model or from tests/engine/support.py's
hand-run reference, never from the engine under test.
"""

from __future__ import annotations

import engine_support as S
import pytest
import torch
from tiny import TINY_ARCHS

import vtwcli

ARCHS = [pytest.param(a, id=a) for a in TINY_ARCHS]
K = 2  # of 4 layers: two see the vision tokens, two run on text only


def _generate(model, batch, n=5, **kw):
    out = model.generate(**batch, max_new_tokens=n, do_sample=False, min_new_tokens=n,
                         return_dict_in_generate=True, **kw)
    return out


@pytest.mark.parametrize("attn", S.attn_params())
@pytest.mark.parametrize("arch", ARCHS)
@torch.no_grad()
def test_k_equals_n_is_bit_identical_and_leaves_no_hook(arch, attn):
    model = S.make(arch, attn)
    batch = S.inputs(model, rows=(0, 1))
    hooks_before = S.hook_count(model)
    base_logits = model(**batch).logits
    base_tokens = _generate(model, batch, n=3).sequences
    n = vtwcli.get_arch(model).num_layers(model.config)
    with vtwcli.withdraw(model, k=n) as handle:
        assert S.hook_count(model) > hooks_before
        logits = model(**batch).logits
        tokens = _generate(model, batch, n=3).sequences
    assert torch.equal(logits, base_logits)
    assert torch.equal(tokens, base_tokens)
    assert handle.last_prefill.kept == handle.last_prefill.length
    assert S.hook_count(model) == hooks_before
    assert not hasattr(model, "_vtw_engine")
    handle.remove()  # idempotent
    assert torch.equal(model(**batch).logits, base_logits)


@pytest.mark.parametrize("attn", S.attn_params(standin=True))
@pytest.mark.parametrize("arch", ARCHS)
@torch.no_grad()
def test_prefill_matches_reference_that_deletes_vision_rows(arch, attn, monkeypatch):
    model = S.make(arch, attn, monkeypatch=monkeypatch)
    batch = S.inputs(model, rows=(1,))
    vision = S.vision_of(model, batch)[0]
    expected = S.reference_last_logits(model, batch, K, drop=vision)
    full = S.reference_last_logits(model, batch, K, drop=None)
    with vtwcli.withdraw(model, k=K) as handle:
        got = model(**batch).logits[0, -1]
    torch.testing.assert_close(got, expected, atol=S.ATOL, rtol=S.RTOL)
    # not vacuous: withdrawal moves the logits far more than the tolerance
    assert (expected - full).abs().max() > max(S.MOVES, 10 * S.ATOL)
    # and the reference without deletion is the unmodified model
    torch.testing.assert_close(model(**batch).logits[0, -1], full, atol=S.ATOL, rtol=S.RTOL)
    stats = handle.last_prefill
    assert stats.vision == [int(vision.sum())]
    assert stats.kept == [vision.numel() - int(vision.sum())]


@pytest.mark.parametrize("attn", S.attn_params(standin=True))
@pytest.mark.parametrize("arch", ARCHS)
@torch.no_grad()
def test_cached_greedy_generate_matches_cache_free_reference(arch, attn, monkeypatch):
    model = S.make(arch, attn, monkeypatch=monkeypatch)
    batch = S.inputs(model, rows=(0,))
    steps = 6
    vision = S.vision_of(model, batch)[0]
    prompt_len, n_vision = vision.numel(), int(vision.sum())

    expected, cur = [], batch
    for _ in range(steps):
        drop = torch.cat([vision, vision.new_zeros(cur["input_ids"].shape[1] - prompt_len)])
        token = int(S.reference_last_logits(model, cur, K, drop=drop).argmax())
        expected.append(token)
        cur = S.extend(cur, token)

    with vtwcli.withdraw(model, k=K):
        out = _generate(model, batch, n=steps)
    assert out.sequences[0, prompt_len:].tolist() == expected

    cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
    n_layers = len(cache.layers)
    seen = steps - 1  # the last generated token is never fed back
    for i in range(n_layers):
        length = cache.layers[i].keys.shape[-2]
        want = prompt_len + seen if i < K else prompt_len - n_vision + seen
        assert length == want, f"layer {i}: cache holds {length} positions, expected {want}"


@pytest.mark.parametrize("method", ["vtw", "fastv"])
@pytest.mark.parametrize("attn", S.attn_params(standin=True))
@pytest.mark.parametrize("arch", ARCHS)
@torch.no_grad()
def test_left_padded_batch_equals_each_prompt_alone(arch, attn, method, monkeypatch):
    model = S.make(arch, attn, monkeypatch=monkeypatch)
    variants = (0, 1, 2)
    batch = S.inputs(model, rows=variants)
    lengths = batch["attention_mask"].sum(1)
    assert len(set(lengths.tolist())) == len(variants), "rows must differ in length"
    counts = S.vision_of(model, batch).sum(1)
    assert len(set(counts.tolist())) > 1, "rows must differ in vision count"

    with vtwcli.withdraw(model, k=K, method=method) as handle:
        logits = model(**batch).logits[:, -1]
        seqs = _generate(model, batch, n=4).sequences
        kept = handle.last_prefill.kept
        for b, v in enumerate(variants):
            alone = S.inputs(model, rows=(v,))
            torch.testing.assert_close(logits[b], model(**alone).logits[0, -1], atol=S.ATOL, rtol=S.RTOL)
            assert handle.last_prefill.kept == [kept[b]]
            new_alone = _generate(model, alone, n=4).sequences[0, alone["input_ids"].shape[1]:]
            assert seqs[b, batch["input_ids"].shape[1]:].tolist() == new_alone.tolist()


@pytest.mark.parametrize("attn", S.attn_params())
@pytest.mark.parametrize("arch", ARCHS)
@torch.no_grad()
def test_fastv_keeps_the_top_ranked_vision_tokens_of_eager_attention(arch, attn):
    ratio, k = 0.5, 2
    model = S.make(arch, attn)
    batch = S.inputs(model, rows=(0, 1))
    vision = S.vision_of(model, batch)
    valid = batch["attention_mask"].bool()

    # ranking from eager attention weights of the same weights (an independent path)
    eager = S.make(arch, "eager") if attn != "eager" else model
    attn_k1 = eager(**batch, output_attentions=True).attentions[k - 1]  # [B, H, L, L]
    scores = attn_k1[:, :, -1, :].float().mean(1)
    expected = valid & ~vision
    for b in range(vision.shape[0]):
        pos = (vision[b] & valid[b]).nonzero(as_tuple=True)[0]
        n_keep = round(pos.numel() * (1 - ratio))  # FastV's own code rounds
        expected[b, pos[scores[b, pos].topk(n_keep).indices]] = True

    with vtwcli.withdraw(model, k=k, method="fastv", ratio=ratio) as handle:
        got_logits = model(**batch).logits[:, -1]
    got = handle.last_prefill.keep_mask.to(expected.device)
    assert torch.equal(got & valid, expected)
    assert handle.last_prefill.kept == expected.sum(1).tolist()

    # and the logits are those of the reference that deletes the pruned vision rows
    for b in range(vision.shape[0]):
        row = {key: v for key, v in S.inputs(model, rows=((0, 1)[b],)).items()}
        lead = batch["input_ids"].shape[1] - row["input_ids"].shape[1]
        drop = (vision[b] & ~expected[b])[lead:]
        ref = S.reference_last_logits(model, row, k, drop=drop)
        torch.testing.assert_close(got_logits[b], ref, atol=S.ATOL, rtol=S.RTOL)


@pytest.mark.parametrize("attn", S.attn_params())
@pytest.mark.parametrize("arch", ARCHS)
@torch.no_grad()
def test_static_cache_generates_what_the_dynamic_cache_does(arch, attn):
    # the dynamic-cache path is checked against the reference above; a static cache must agree
    model = S.make(arch, attn)
    batch = S.inputs(model, rows=(0, 1))
    with vtwcli.withdraw(model, k=K):
        dynamic = _generate(model, batch, n=4).sequences
        static = _generate(model, batch, n=4, cache_implementation="static").sequences
    assert torch.equal(static, dynamic)


@pytest.mark.parametrize("arch", ["llava", "llava_next", "qwen2_vl"])
@torch.no_grad()
def test_beam_search_with_the_cache_equals_beam_search_without(arch):
    # Without a cache every step is a prefill (checked against the reference above); with it,
    # beams reorder the cache each step and the engine's carried validity mask must follow.
    model = S.make(arch, "eager")
    batch = S.inputs(model, rows=(0, 1))
    with vtwcli.withdraw(model, k=K):
        cached = _generate(model, batch, n=4, num_beams=3, num_return_sequences=2).sequences
        fresh = _generate(model, batch, n=4, num_beams=3, num_return_sequences=2, use_cache=False).sequences
    base = _generate(model, batch, n=4, num_beams=3, num_return_sequences=2).sequences
    assert torch.equal(cached, fresh)
    assert not torch.equal(cached, base)  # withdrawal changed what the beams found


@pytest.mark.parametrize("arch", [a for a in TINY_ARCHS if "qwen" not in a])  # Qwen's M-RoPE needs input_ids
@torch.no_grad()
def test_inputs_embeds_find_the_same_vision_positions(arch):
    model = S.make(arch, "sdpa")
    batch = S.inputs(model, rows=(0, 1))
    embeds = model.get_input_embeddings()(batch["input_ids"])
    by_embeds = {key: v for key, v in batch.items() if key != "input_ids"}
    by_embeds["inputs_embeds"] = embeds
    with vtwcli.withdraw(model, k=K) as handle:
        from_ids = model(**batch).logits[:, -1]
        stats_ids = handle.last_prefill
        from_embeds = model(**by_embeds).logits[:, -1]
    assert handle.last_prefill.vision == stats_ids.vision
    torch.testing.assert_close(from_embeds, from_ids, atol=S.ATOL, rtol=S.RTOL)


@pytest.mark.parametrize("arch", ARCHS)
@torch.no_grad()
def test_a_generated_token_equal_to_the_placeholder_is_text(arch):
    from tiny import IMAGE_ID
    from transformers import LogitsProcessor, LogitsProcessorList

    class ForcePlaceholderFirst(LogitsProcessor):
        def __call__(self, input_ids, scores):
            if input_ids.shape[1] == prompt_len:
                forced = torch.full_like(scores, float("-inf"))
                forced[:, IMAGE_ID] = 0.0
                return forced
            return scores

    model = S.make(arch, "eager")
    batch = S.inputs(model, rows=(0,))
    prompt_len = batch["input_ids"].shape[1]
    n_vision = int(S.vision_of(model, batch).sum())
    with vtwcli.withdraw(model, k=K) as handle:
        out = _generate(model, batch, n=2, logits_processor=LogitsProcessorList([ForcePlaceholderFirst()]))
    assert out.sequences[0, prompt_len] == IMAGE_ID
    cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
    lengths = [layer.keys.shape[-2] for layer in cache.layers]
    # the forced token was fed back once: cached by every layer, as text
    assert lengths == [prompt_len + 1] * K + [prompt_len - n_vision + 1] * (len(lengths) - K)
    assert handle.prefills == 1
