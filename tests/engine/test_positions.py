"""Position embeddings after withdrawal (the paper's Table 6): ``keep`` (original positions)
and ``rearrange`` (layers >= K renumber the tokens they hold 0..T-1), each against a hand-run
reference that deletes the vision rows before layer K and builds the rotary table itself:
from the original position ids (keep) or from positions numbered by hand (rearrange)."""

from __future__ import annotations

import engine_support as S
import pytest
import torch
from tiny import TINY_ARCHS

import vtwcli
from vtwcli.archs import get_arch
from vtwcli.errors import UsageError

ARCHS = [pytest.param(a, id=a) for a in TINY_ARCHS]
ATTNS = [pytest.param(a, id=a) for a in ("eager", "sdpa")]
K = 2  # of 4 layers


def _hand_rotary(text, n: int, like: torch.Tensor):
    """cos/sin [1, n, D] for positions 0..n-1 on every axis, from the rotary frequencies alone
    (with equal axes M-RoPE's sections all read the same position: plain rotary)."""
    rotary = text.rotary_emb
    inv = rotary.inv_freq.to(device=like.device, dtype=torch.float32)
    freqs = torch.arange(n, device=like.device, dtype=torch.float32)[:, None] * inv[None]
    emb = torch.cat([freqs, freqs], -1)[None]
    scale = getattr(rotary, "attention_scaling", 1.0)
    return (emb.cos() * scale).to(like.dtype), (emb.sin() * scale).to(like.dtype)


@torch.no_grad()
def reference_rearranged_last_logits(model, batch, k, drop):
    """Last-token logits with the ``drop`` rows deleted before layer k and the remaining rows
    renumbered 0..T-1 for layers >= k (layers < k: the model's own positions)."""
    arch = get_arch(model)
    text = arch.text_model(model)
    embeds, pos = S.capture_decoder_inputs(model, batch)
    cos, sin = text.rotary_emb(embeds, pos)
    hidden = embeds

    def causal(n):
        m = torch.full((n, n), torch.finfo(hidden.dtype).min, dtype=hidden.dtype, device=hidden.device)
        return m.triu(1)[None, None]

    mask = causal(hidden.shape[1])
    for i, layer in enumerate(arch.decoder_layers(model)):
        if i == k:
            rows = (~drop).nonzero(as_tuple=True)[0]
            hidden = hidden[:, rows]
            like = cos
            cos, sin = _hand_rotary(text, rows.numel(), hidden)
            if like.dim() == 4:  # older M-RoPE layout: one table per axis [3, B, T, D], all equal here
                cos, sin = (t[None].expand(like.shape[0], *t.shape) for t in (cos, sin))
            mask = causal(hidden.shape[1])
        out = layer(hidden, attention_mask=mask, position_embeddings=(cos, sin), position_ids=None, use_cache=False)
        hidden = out[0] if isinstance(out, tuple) else out
    return arch.lm_head(model)(text.norm(hidden[:, -1]))[0]


@pytest.mark.parametrize("attn", ATTNS)
@pytest.mark.parametrize("arch", ARCHS)
@torch.no_grad()
def test_keep_and_rearrange_each_equal_their_reference_and_differ(arch, attn):
    model = S.make(arch, attn)
    batch = S.inputs(model, rows=(1,))
    drop = S.vision_of(model, batch)[0]
    with vtwcli.withdraw(model, k=K, positions="keep"):
        keep = model(**batch).logits[0, -1]
    with vtwcli.withdraw(model, k=K, positions="rearrange"):
        rearranged = model(**batch).logits[0, -1]
    torch.testing.assert_close(keep, S.reference_last_logits(model, batch, K, drop), atol=S.ATOL, rtol=S.RTOL)
    torch.testing.assert_close(rearranged, reference_rearranged_last_logits(model, batch, K, drop),
                               atol=S.ATOL, rtol=S.RTOL)  # fmt: skip
    assert (keep - rearranged).abs().max() > S.MOVES  # the positions matter: not a vacuous equality
    plain = model(**batch).logits[0, -1]
    with vtwcli.withdraw(model, k=4, positions="rearrange"):  # K = N: nothing withdrawn, nothing renumbered
        assert torch.equal(model(**batch).logits[0, -1], plain)


@pytest.mark.parametrize("attn", ATTNS)
@pytest.mark.parametrize("arch", ARCHS)
@torch.no_grad()
def test_rearranged_generation_with_cache_equals_cache_free_reference(arch, attn):
    """Decode steps continue the renumbering: the n-th generated token sits at T + n in layers >= K."""
    model = S.make(arch, attn)
    batch = S.inputs(model, rows=(0,))
    drop_prompt = S.vision_of(model, batch)[0]
    with vtwcli.withdraw(model, k=K, positions="rearrange"):
        out = model.generate(**batch, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    got = out[0, batch["input_ids"].shape[1]:].tolist()
    want, cur = [], batch
    for _ in range(4):
        drop = torch.cat([drop_prompt, torch.zeros(len(want), dtype=torch.bool, device=drop_prompt.device)])
        token = int(reference_rearranged_last_logits(model, cur, K, drop).argmax())
        want.append(token)
        cur = S.extend(cur, token)
    assert got == want


@pytest.mark.parametrize("arch", ARCHS)
@torch.no_grad()
def test_rearranged_left_padded_batch_equals_each_prompt_alone(arch):
    model = S.make(arch, "sdpa")
    variants = (0, 1, 2)
    batch = S.inputs(model, rows=variants)
    with vtwcli.withdraw(model, k=K, positions="rearrange"):
        logits = model(**batch).logits[:, -1]
        seqs = model.generate(**batch, max_new_tokens=3, min_new_tokens=3, do_sample=False)
        for b, v in enumerate(variants):
            alone = S.inputs(model, rows=(v,))
            torch.testing.assert_close(logits[b], model(**alone).logits[0, -1], atol=S.ATOL, rtol=S.RTOL)
            new = model.generate(**alone, max_new_tokens=3, min_new_tokens=3, do_sample=False)
            assert seqs[b, batch["input_ids"].shape[1]:].tolist() == new[0, alone["input_ids"].shape[1]:].tolist()


def test_unknown_positions_policy_is_refused():
    model = S.make("llava", "sdpa")
    with pytest.raises(UsageError, match="positions must be one of keep, rearrange"):
        vtwcli.withdraw(model, k=K, positions="shuffle").__enter__()
    assert vtwcli.engine.attached(model) is None
