"""Bad input gets a specific exception whose message says what to do; the model is untouched."""

from __future__ import annotations

import engine_support as S
import pytest
import torch
from tiny import TINY_ARCHS, build_tiny_model, text_only_inputs

import vtwcli
import vtwcli.engine
from vtwcli.archs import get_arch, supported
from vtwcli.errors import (
    AlreadyPatchedError,
    KOutOfRangeError,
    NoVisionTokensError,
    UnsupportedModelError,
    UsageError,
    VTWError,
)


@pytest.fixture(scope="module")
def llava():
    return build_tiny_model(TINY_ARCHS[0], attn="eager")


@pytest.mark.parametrize("k", [0, -1, 5, 100])
def test_k_out_of_range(llava, k):
    before = S.hook_count(llava)
    with pytest.raises(KOutOfRangeError, match=r"between 1 and 4") as err:
        vtwcli.engine.apply(llava, k)
    if k == 0:
        assert "refused" in str(err.value)
    assert S.hook_count(llava) == before


@pytest.mark.parametrize("k", ["2", 2.0, True])
def test_k_must_be_an_integer(llava, k):
    with pytest.raises(KOutOfRangeError, match="integer"):
        vtwcli.engine.apply(llava, k)


def test_unknown_method_and_bad_ratio(llava):
    with pytest.raises(UsageError, match="vtw, fastv, rand"):
        vtwcli.engine.apply(llava, 2, method="prune")
    with pytest.raises(UsageError, match="between 0 and 1"):
        vtwcli.engine.apply(llava, 2, method="fastv", ratio=1.5)
    assert vtwcli.engine.attached(llava) is None


@pytest.mark.parametrize("arch", TINY_ARCHS)
@torch.no_grad()
def test_inputs_without_vision_placeholders(arch):
    model = build_tiny_model(arch, attn="eager")
    before = S.hook_count(model)
    with pytest.raises(NoVisionTokensError, match="no image or video placeholder") as err:
        with vtwcli.withdraw(model, k=2):
            model(**text_only_inputs(model))
    assert "without the engine" in str(err.value)
    assert S.hook_count(model) == before  # the with block cleaned up after the error


@torch.no_grad()
def test_second_apply_on_a_patched_model(llava):
    handle = vtwcli.engine.apply(llava, 2)
    try:
        with pytest.raises(AlreadyPatchedError, match=r"handle.remove\(\)"):
            vtwcli.engine.apply(llava, 3)
        with pytest.raises(AlreadyPatchedError):
            with vtwcli.withdraw(llava, k=4):
                pass
        assert vtwcli.engine.attached(llava) is handle
    finally:
        handle.remove()
    handle.remove()
    with vtwcli.withdraw(llava, k=3) as again:  # detached: attaching works again
        assert again.k == 3


def test_unsupported_architecture_lists_what_is_supported():
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=2, num_attention_heads=2))
    with pytest.raises(UnsupportedModelError) as err:
        vtwcli.withdraw(model, k=1).__enter__()
    message = str(err.value)
    assert "'llama'" in message
    for rec in supported():
        assert rec.model_type in message and rec.family in message
    with pytest.raises(UnsupportedModelError):
        get_arch(model.config)
    assert issubclass(UnsupportedModelError, VTWError)


def test_every_tiny_arch_has_a_record_with_its_placeholders():
    for arch in TINY_ARCHS:
        model = build_tiny_model(arch, num_layers=2)
        rec = get_arch(model)
        assert rec.model_type == arch
        assert rec.num_layers(model.config) == 2 == len(rec.decoder_layers(model))
        assert rec.hidden_size(model.config) == model.config.get_text_config().hidden_size
        assert len(rec.placeholder_ids(model.config)) >= 1


@torch.no_grad()
def test_rand_drops_as_many_prompt_tokens_as_vision_tokens_seeded(llava):
    batch = S.inputs(llava, rows=(0, 1))
    vision = S.vision_of(llava, batch)
    valid = batch["attention_mask"].bool()
    masks = []
    for seed in (0, 0, 1):
        with vtwcli.withdraw(llava, k=2, method="rand", seed=seed) as h:
            llava(**batch)
        stats = h.last_prefill
        assert stats.withdrawn == (vision & valid).sum(1).tolist()
        keep = stats.keep_mask
        assert bool(keep[:, -1].all())
        assert not bool((keep & ~valid).any())
        masks.append(keep)
    assert torch.equal(masks[0], masks[1])
    assert not torch.equal(masks[0], masks[2])
    # random choice reaches text tokens too (not the VTW rule in disguise)
    assert bool((~masks[0] & valid & ~vision).any())


@torch.no_grad()
def test_a_decoder_input_that_does_not_match_the_vision_mask_is_an_error(llava):
    """A model that changes the sequence between input ids and decoder must not silently run as the baseline."""
    text_model = get_arch(llava).text_model(llava)

    def drop_first_token(module, args, kwargs):  # what such a model would do (registered before the engine)
        kwargs["inputs_embeds"] = kwargs["inputs_embeds"][:, 1:]
        if kwargs.get("attention_mask") is not None:
            kwargs["attention_mask"] = kwargs["attention_mask"][:, 1:]
        kwargs["position_ids"] = None
        kwargs.pop("cache_position", None)
        return args, kwargs

    batch = S.inputs(llava, rows=(0,))
    length = batch["input_ids"].shape[1]
    shrink = text_model.register_forward_pre_hook(drop_first_token, with_kwargs=True)
    try:
        with pytest.raises(UnsupportedModelError, match=rf"shape \(1, {length}\) but .* 1 x {length - 1} tokens"):
            with vtwcli.withdraw(llava, k=2):
                llava(**batch)
    finally:
        shrink.remove()
    assert vtwcli.engine.attached(llava) is None
