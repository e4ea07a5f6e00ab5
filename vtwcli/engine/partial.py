"""Run the upper decoder layers on a subset of captured rows (for the calibration sweep).

A sweep over K needs, per prompt, one full forward and then layers K..N-1 once per
candidate K on the kept rows only. ``capture_layer_inputs`` records what each decoder layer
received in one unmodified forward; ``run_layers_from`` continues from layer K with the
same row selection, rotary rows and mask the engine uses, and returns last-token logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vtwcli.archs import get_arch
from vtwcli.engine import select


@dataclass
class LayerInputs:
    """``hidden[i]``: input of decoder layer i ([B, L, H]); ``hidden[N]``: output of the last
    layer (before the final norm). ``rope``: the (cos, sin) rows the layers received.
    ``valid``: real tokens; ``vision``: placeholder positions (both [B, L] bool).
    ``logits``: the unmodified model's last-token logits [B, V]."""

    hidden: list[torch.Tensor]
    rope: tuple[torch.Tensor, torch.Tensor]
    valid: torch.Tensor
    vision: torch.Tensor
    logits: torch.Tensor


@torch.no_grad()
def capture_layer_inputs(model, inputs: dict) -> LayerInputs:
    """One forward of ``model`` (no cache) recording every decoder layer's input."""
    arch = get_arch(model)
    layers = arch.decoder_layers(model)
    hidden: list = [None] * (len(layers) + 1)
    seen: dict = {}

    def on_text(module, args, kwargs):
        embeds = kwargs["inputs_embeds"]
        mask = kwargs.get("attention_mask")
        if isinstance(mask, torch.Tensor) and mask.dim() == 2:
            seen["valid"] = mask[:, -embeds.shape[1]:].bool()
        else:
            seen["valid"] = torch.ones(embeds.shape[:2], dtype=torch.bool, device=embeds.device)

    def make_pre(i):
        def pre(module, args, kwargs):
            hidden[i] = args[0] if args else kwargs["hidden_states"]
            if i == 0:
                seen["rope"] = kwargs["position_embeddings"]

        return pre

    def last_out(module, args, output):
        hidden[-1] = output[0] if isinstance(output, tuple) else output

    handles = [arch.text_model(model).register_forward_pre_hook(on_text, with_kwargs=True)]
    handles += [layer.register_forward_pre_hook(make_pre(i), with_kwargs=True) for i, layer in enumerate(layers)]
    handles.append(layers[-1].register_forward_hook(last_out))
    try:
        out = model(**inputs, use_cache=False, logits_to_keep=1)
    finally:
        for h in handles:
            h.remove()
    ids = inputs["input_ids"]
    vision = torch.isin(ids, torch.tensor(arch.placeholder_ids(model.config), device=ids.device))
    return LayerInputs(hidden=hidden, rope=seen["rope"], valid=seen["valid"], vision=vision,
                       logits=out.logits[:, -1])


@torch.no_grad()
def run_layers_from(model, captured: LayerInputs, k: int, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Last-token logits [B, V] when layers k..N-1 see only the ``keep`` rows ([B, L] bool;
    default: the VTW rule, text tokens only). Original positions are kept."""
    from transformers.masking_utils import create_causal_mask

    arch = get_arch(model)
    layers = arch.decoder_layers(model)
    text = arch.text_model(model)
    if keep is None:
        keep = select.keep_vtw(captured.valid, captured.vision)
    if k >= len(layers):
        h = captured.hidden[-1]
    else:
        index, filled = select.right_aligned_index(keep)
        h = select.gather_rows(captured.hidden[k], index)
        cos, sin = (select.gather_rows(t, index) for t in captured.rope)
        valid = filled & captured.valid.gather(1, index)
        mask = create_causal_mask(
            config=arch.text_config(model.config), inputs_embeds=h, attention_mask=valid, cache=None,
            position_ids=None,
        )
        for layer in layers[k:]:
            out = layer(h, attention_mask=mask, position_embeddings=(cos, sin), position_ids=None, use_cache=False)
            h = out[0] if isinstance(out, tuple) else out
    return arch.lm_head(model)(text.norm(h[:, -1:]))[:, -1]
