"""The attention probe against a reference that materializes every layer's full attention map.

The reference runs an eager model with ``output_attentions=True`` and no cache, recomputing
the whole sequence at each greedy step, takes the last row of each layer's map, and sums it
per token type (types from tests/tiny's own placeholder ids). The probe under test runs
inside ``generate()`` with the cache, on eager and on sdpa models with the same weights.
"""

from __future__ import annotations

import pytest
import torch
from tiny import IMAGE_ID, TINY_ARCHS, VIDEO_ID, build_tiny_model, tiny_inputs

from vtwcli.archs import get_arch
from vtwcli.engine import withdraw
from vtwcli.errors import NoVisionTokensError
from vtwcli.inspect.probe import AttentionProbe

STEPS = 3


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _extend(inputs, token):
    """``inputs`` with one generated text token appended (per-token tensors extended as text)."""
    out = dict(inputs)
    ids = inputs["input_ids"]
    tok = torch.tensor([[token]], dtype=ids.dtype)
    out["input_ids"] = torch.cat([ids, tok], 1)
    out["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones_like(tok)], 1)
    if "mm_token_type_ids" in inputs:
        out["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(tok)], 1)
    return out


def _reference(model, inputs, steps, k=None):
    """[steps, N, 4] shares from full eager maps, and the greedy tokens; with ``k`` the engine
    is attached and layers >= K see the non-vision positions only."""
    prompt = inputs["input_ids"][0]
    vision = (prompt == IMAGE_ID) | (prompt == VIDEO_ID)
    first = int(vision.nonzero()[0, 0])
    cur, rows, tokens = dict(inputs), [], []
    for _ in range(steps):
        length = cur["input_ids"].shape[1]
        types = torch.full((length,), 3)  # generated tokens: output
        types[: prompt.numel()] = 2
        types[:first] = 0
        types[: prompt.numel()][vision] = 1
        with torch.no_grad():
            if k is None:
                out = model(**cur, output_attentions=True, use_cache=False)
            else:
                with withdraw(model, k):
                    out = model(**cur, output_attentions=True, use_cache=False)
        per_layer = []
        for j, att in enumerate(out.attentions):
            row = att[0, :, -1].double()  # [H, keys]
            t = types if k is None or j < k else types[torch.cat([~vision, torch.ones(length - prompt.numel(), dtype=torch.bool)])]
            assert row.shape[1] == t.numel()
            per_layer.append(torch.stack([row[:, t == c].sum(1) for c in range(4)], 1).mean(0))
        rows.append(torch.stack(per_layer))
        token = int(out.logits[0, -1].argmax())
        tokens.append(token)
        cur = _extend(cur, token)
    return torch.stack(rows), tokens


def _probe(model, inputs, steps):
    probe = AttentionProbe(model, get_arch(model))
    with probe.sample(inputs["input_ids"][0]) as rec:
        with torch.no_grad():
            seq = model.generate(**inputs, max_new_tokens=steps, min_new_tokens=steps, do_sample=False)
    return rec.matrix(), seq[0, inputs["input_ids"].shape[1]:].tolist()


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_shares_equal_full_map_reference(arch, attn):
    ref_model = build_tiny_model(arch, attn="eager")
    model = build_tiny_model(arch, attn=attn)
    inputs = tiny_inputs(model, rows=(1,))
    want, want_tokens = _reference(ref_model, inputs, STEPS)
    got, got_tokens = _probe(model, inputs, STEPS)
    assert got_tokens == want_tokens
    assert got.shape == (STEPS, 4, 4)
    assert torch.allclose(got.sum(-1), torch.ones(STEPS, 4, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    # not vacuous: every type but output draws attention at the prefill, output from step 1 on
    assert (got[0, :, :3] > 1e-3).all() and (got[0, :, 3] == 0).all() and (got[1:, :, 3] > 0).all()


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_shares_with_engine_attached(arch, attn):
    """With VTW at K=2 the probe types the kept key slots: layers >= K give vision 0 and
    match the reference over the kept tokens; layers < K still see the image."""
    ref_model = build_tiny_model(arch, attn="eager")
    model = build_tiny_model(arch, attn=attn)
    inputs = tiny_inputs(model, rows=(0,))
    want, want_tokens = _reference(ref_model, inputs, STEPS, k=2)
    with withdraw(model, 2):
        got, got_tokens = _probe(model, inputs, STEPS)
    assert got_tokens == want_tokens
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    assert (got[:, 2:, 1] == 0).all() and (got[:, :2, 1] > 1e-3).all()
    plain, _ = _probe(model, inputs, STEPS)
    assert not torch.allclose(plain[:, 2:], got[:, 2:], atol=1e-3)  # withdrawal changed what is seen


def test_probe_leaves_attention_registry_as_it_was():
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    model = build_tiny_model("llava", attn="sdpa")
    before = dict(ALL_ATTENTION_FUNCTIONS._local_mapping)
    _probe(model, tiny_inputs(model), 2)
    assert dict(ALL_ATTENTION_FUNCTIONS._local_mapping) == before


def test_fastv_engine_probe_nests_inside():
    """FastV wraps the same registry entry at layer K-1: both wrappers come off afterwards."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    model = build_tiny_model("llava", attn="sdpa")
    inputs = tiny_inputs(model)
    before = dict(ALL_ATTENTION_FUNCTIONS._local_mapping)
    with withdraw(model, 2, method="fastv", ratio=0.5) as handle:
        got, _ = _probe(model, inputs, 2)
    assert dict(ALL_ATTENTION_FUNCTIONS._local_mapping) == before
    n_vis = int((inputs["input_ids"] == IMAGE_ID).sum())
    assert handle.last_prefill.kept[0] == inputs["input_ids"].shape[1] - n_vis + n_vis // 2
    assert (got[:, 2:, 1] > 0).all()  # half the vision tokens are still there


def test_prompt_without_vision_is_refused():
    from tiny import text_only_inputs

    model = build_tiny_model("llava", attn="sdpa")
    probe = AttentionProbe(model, get_arch(model))
    with pytest.raises(NoVisionTokensError, match="no image or video placeholder"):
        probe.sample(text_only_inputs(model)["input_ids"][0])


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_fastv_mask_shares_equal_in_place_fastv(arch, attn):
    """FastV's masking implementation keeps every key slot in layers >= K and masks the pruned
    vision tokens out: the output tokens see exactly the keys in-place FastV keeps, so the probe
    (typing the full prompt there) gives in-place FastV's shares, and less vision than no engine."""
    model = build_tiny_model(arch, attn=attn)
    inputs = tiny_inputs(model, rows=(0,))
    with withdraw(model, 2, method="fastv", ratio=0.5):
        want, want_tokens = _probe(model, inputs, STEPS)
    with withdraw(model, 2, method="fastv-mask", ratio=0.5):
        got, got_tokens = _probe(model, inputs, STEPS)
    plain, _ = _probe(model, inputs, STEPS)
    assert got_tokens == want_tokens
    assert torch.allclose(got.sum(-1), torch.ones_like(got.sum(-1)), atol=1e-5)
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    assert (got[:, 2:, 1] > 1e-4).all()  # the kept half of the image still draws attention
    # at the prompt's last token (the replies may then differ): layers < K see the whole image as
    # without the engine, layers >= K no longer see the pruned half
    assert torch.allclose(got[0, :2], plain[0, :2], atol=1e-5)
    assert not torch.allclose(plain[0, 2:], got[0, 2:], atol=1e-3)


def test_a_layer_that_went_unrecorded_is_an_error_not_a_dropped_row():
    """If an attention call bypasses the probe, the sample fails instead of losing that output token."""
    model = build_tiny_model("llava", attn="sdpa")
    inputs = tiny_inputs(model)
    probe = AttentionProbe(model, get_arch(model))
    with pytest.raises(RuntimeError, match=r"output token 0: the attention of layer\(s\) 1 was not recorded"):
        with probe.sample(inputs["input_ids"][0]) as rec:
            with torch.no_grad():
                model(**inputs)
            rec.shares[0][1] = None  # as if layer 1's call had gone past the probe
    # an interrupted forward (an exception) still just drops the incomplete row
    with pytest.raises(KeyboardInterrupt):
        with probe.sample(inputs["input_ids"][0]) as rec:
            with torch.no_grad():
                model(**inputs)
            rec.shares[0][1] = None
            raise KeyboardInterrupt
    assert rec.shares == []
