"""The independent reference the conformance suite checks the engine against.

It shares no code with vtwcli: it runs the *unmodified* model in eager mode, cache-free, and
only edits what the model itself hands its layers:

- every attention layer >= K gets the model's own 4D mask (causal, sliding window, bidirectional
  blocks, padding: whatever the model built for that layer) with the withdrawn tokens' key
  columns masked for every other query, so no kept token can see a withdrawn one;
- every non-attention mixer >= K (linear attention, short convolution) is run, row by row, on
  the kept tokens only, and its output scattered back (withdrawn rows get zeros);
- DeepStack injections into layers >= K are dropped (the rule: they land on withdrawn rows).

Withdrawn rows are still computed (they see only themselves after K) but influence nothing, so
each kept row's logits are what the rule says it must be.
"""

from __future__ import annotations

import torch


def text_model(model):
    base = model.model
    return base.language_model if hasattr(base, "language_model") else base.text_model


def layer_types(model) -> list[str]:
    cfg = model.config.get_text_config(decoder=True)
    n = cfg.num_hidden_layers
    types = list(getattr(cfg, "layer_types", None) or [])
    return types[:n] if len(types) >= n else ["full_attention"] * n


def _mask_columns(mask: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
    # mask: [B, 1, L, L] additive float (eager); drop: [B, L] bool
    length = mask.shape[-1]
    assert mask.shape[-2] == length == drop.shape[1], "reference: cache-free, full-length masks only"
    eye = torch.eye(length, dtype=torch.bool, device=mask.device)
    hide = drop[:, None, None, :].to(mask.device) & ~eye
    return mask.masked_fill(hide, torch.finfo(mask.dtype).min)


def _kept_only_mixer(mixer, drop: torch.Tensor, valid: torch.Tensor):
    real_forward = mixer.forward

    def forward(hidden_states, *args, **kwargs):
        out = torch.zeros_like(hidden_states)
        for b in range(hidden_states.shape[0]):
            rows = (valid[b] & ~drop[b]).nonzero(as_tuple=True)[0].to(hidden_states.device)
            got = real_forward(hidden_states[b : b + 1, rows])
            got = got[0] if isinstance(got, tuple) else got
            out[b, rows] = got[0]
        return out

    return forward


@torch.no_grad()
def reference_logits(model, batch: dict, k: int, drop: torch.Tensor | None, mixers=(), deepstack=False):
    """Logits [B, L, V] of ``model`` (eager) when the tokens in ``drop`` ([B, L] bool) are
    withdrawn before layer ``k``; ``drop=None`` is the unmodified model."""
    assert model.config.get_text_config(decoder=True)._attn_implementation == "eager"
    if drop is None:
        return model(**batch, use_cache=False).logits
    lm = text_model(model)
    types = layer_types(model)
    valid = batch["attention_mask"].bool()
    handles, patched = [], []

    def attention_hook(module, args, kwargs):
        mask = kwargs.get("attention_mask")
        assert isinstance(mask, torch.Tensor) and mask.dim() == 4, f"reference: no 4D mask ({type(mask)})"
        return args, dict(kwargs, attention_mask=_mask_columns(mask, drop))

    def text_hook(module, args, kwargs):
        if kwargs.get("deepstack_visual_embeds") is not None:
            kwargs = dict(kwargs, deepstack_visual_embeds=list(kwargs["deepstack_visual_embeds"])[:k])
        return args, kwargs

    try:
        for i, layer in enumerate(lm.layers):
            if i < k:
                continue
            if types[i] in ("linear_attention", "conv"):
                for name in mixers:
                    mixer = getattr(layer, name, None)
                    if mixer is not None:
                        mixer.forward = _kept_only_mixer(mixer, drop, valid)
                        patched.append(mixer)
            else:
                handles.append(layer.register_forward_pre_hook(attention_hook, with_kwargs=True))
        if deepstack:
            handles.append(lm.register_forward_pre_hook(text_hook, with_kwargs=True))
        return model(**batch, use_cache=False).logits
    finally:
        for h in handles:
            h.remove()
        for m in patched:
            del m.forward


def extend(batch: dict, token: int, token_type: int = 0) -> dict:
    """The same prompt with one more (text) token appended, as a cache-free decoder sees it
    (``token_type``: its token type id, where the model takes them)."""
    out = dict(batch)
    ids = batch["input_ids"]
    new = torch.full((ids.shape[0], 1), token, device=ids.device, dtype=ids.dtype)
    out["input_ids"] = torch.cat([ids, new], 1)
    out["attention_mask"] = torch.cat([batch["attention_mask"], torch.ones_like(new)], 1)
    if "mm_token_type_ids" in batch:
        out["mm_token_type_ids"] = torch.cat([batch["mm_token_type_ids"], torch.zeros_like(new)], 1)
    if "token_type_ids" in batch:
        out["token_type_ids"] = torch.cat([batch["token_type_ids"], torch.full_like(new, token_type)], 1)
    return out
