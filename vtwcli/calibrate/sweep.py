"""The KL sweep over candidate K: a fast way (one full forward per sample) and the paper's way.

Layers below K are the same computation for every candidate K, so one full forward can
serve the whole sweep. During it, a pre-hook on each decoder layer j >= k_min keeps the text
rows of the hidden states entering layer j (vision rows dropped, original positions kept by
gathering the rotary tables with the same index). Then the candidates run together: at layer
j the candidate K = j joins the batch with its captured rows, every active candidate goes
through layer j, and after layer N-1 the final norm and lm_head give each candidate's
withdrawn logits. That is N - k_min layer calls on short text-only rows instead of
N - k_min + 1 extra full forwards.

The slow reference (:func:`slow_sweep`) is the paper's loop: one forward per candidate with
the withdrawal engine attached. Tests require both to give the same curve. A model whose
layers cannot be run by hand with one causal mask and one rotary table (sliding windows,
linear attention, bidirectional blocks, per-layer inputs, KV sharing:
``vtwcli.engine.plain_decoder_reason``) is always swept the slow way.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vtwcli.bench.timing import Clock, model_devices
from vtwcli.calibrate.kl import withdrawal_kl

_CACHE_KWARGS = ("cache", "past_key_values")


@dataclass
class SweepStats:
    """What one sweep measured, summed over its batches."""

    full_seconds: float = 0.0  # the full forwards (the baseline distributions and the captures)
    tail_seconds: float = 0.0  # the withdrawn layers K..N-1 of every candidate
    generate_seconds: float = 0.0  # greedy continuation when tokens > 1
    prompt_lengths: list[int] = field(default_factory=list)  # per sample, valid tokens (incl. generated)
    text_lengths: list[int] = field(default_factory=list)  # per sample, non-vision valid tokens
    vision_counts: list[int] = field(default_factory=list)


# --------------------------------------------------------------------------------------
# small tensor helpers
# --------------------------------------------------------------------------------------
def vision_mask(input_ids, vision_token_ids: Sequence[int]):
    """Boolean [B, L]: the positions holding an image or video placeholder token."""
    import torch

    mask = torch.zeros_like(input_ids, dtype=torch.bool)
    for tid in vision_token_ids:
        if tid is not None:
            mask |= input_ids == int(tid)
    return mask


def text_index(input_ids, attention_mask, vision_token_ids: Sequence[int]):
    """Right-aligned gather index of the kept (text, non-padding) rows.

    Returns ``(index [B, T] long, valid [B, T] bool)``; rows that keep fewer than T tokens are
    padded on the left (index repeats the row's first kept position, valid is False there), so
    the last column is always each sample's last token, as with left-padded prompts.
    """
    import torch

    keep = ~vision_mask(input_ids, vision_token_ids)
    if attention_mask is not None:
        keep &= attention_mask.bool()
    counts = keep.sum(dim=1)
    width = int(counts.max())
    bsz = input_ids.shape[0]
    index = torch.zeros(bsz, width, dtype=torch.long, device=input_ids.device)
    valid = torch.zeros(bsz, width, dtype=torch.bool, device=input_ids.device)
    for b in range(bsz):
        pos = keep[b].nonzero().squeeze(1)
        n = pos.numel()
        index[b, width - n :] = pos
        index[b, : width - n] = pos[0]
        valid[b, width - n :] = True
    return index, valid


def gather_rows(x, index):
    """Gather along axis -2 of ``x`` ([..., B or 1, L, D]) with a [B, T] index."""
    bsz, width = index.shape
    if x.shape[-3] != bsz:
        x = x.expand(*x.shape[:-3], bsz, *x.shape[-2:])
    idx = index.view(*([1] * (x.dim() - 3)), bsz, width, 1).expand(*x.shape[:-3], bsz, width, x.shape[-1])
    return x.gather(-2, idx)


def _repeat_batch(x, times: int):
    """Tile the batch axis (-3) ``times`` over: candidate c holds rows c*B..(c+1)*B-1."""
    if times == 1:
        return x
    reps = [1] * x.dim()
    reps[-3] = times
    return x.repeat(*reps)


def _accepts(fn: Callable, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params


def extend_inputs(inputs: Mapping[str, Any], new_tokens) -> dict[str, Any]:
    """``inputs`` with ``new_tokens`` [B, n] appended as text (the greedy continuation).

    Any other per-token tensor of shape [B, L] (a token-type or modality id) is extended with
    zeros, the value every processor uses for text.
    """
    import torch

    ids = inputs["input_ids"]
    bsz, length = ids.shape
    out: dict[str, Any] = {}
    for key, value in inputs.items():
        if key == "input_ids":
            out[key] = torch.cat([ids, new_tokens.to(ids.dtype)], dim=1)
        elif key == "attention_mask" and value is not None:
            out[key] = torch.cat([value, torch.ones_like(new_tokens, dtype=value.dtype)], dim=1)
        elif torch.is_tensor(value) and value.dim() == 2 and tuple(value.shape) == (bsz, length):
            out[key] = torch.cat([value, torch.zeros_like(new_tokens, dtype=value.dtype)], dim=1)
        else:
            out[key] = value
    return out


# --------------------------------------------------------------------------------------
# model parts, reached through the architecture record
# --------------------------------------------------------------------------------------
@dataclass
class ModelParts:
    layers: Any  # the text decoder's layers (a ModuleList)
    norm: Any  # the decoder's final norm
    lm_head: Any
    text_config: Any
    vision_token_ids: tuple[int, ...]

    @property
    def num_layers(self) -> int:
        return len(self.layers)


def model_parts(model, arch=None) -> ModelParts:
    """The pieces the sweep runs by hand, found through ``vtwcli.archs`` (no model-type strings)."""
    from vtwcli.archs import get_arch

    arch = arch or get_arch(model)
    norm = getattr(arch.text_model(model), "norm", None)
    if norm is None:
        raise RuntimeError(f"cannot find the final norm of {type(arch.text_model(model)).__name__}")
    ids = arch.placeholder_ids(model.config)
    if not ids:
        raise RuntimeError(f"the {arch.family} record names no vision placeholder token id")
    return ModelParts(
        layers=arch.decoder_layers(model),
        norm=norm,
        lm_head=arch.lm_head(model),
        text_config=arch.text_config(model.config),
        vision_token_ids=tuple(ids),
    )


# --------------------------------------------------------------------------------------
# the two sweeps
# --------------------------------------------------------------------------------------
def _continue_greedy(model, inputs: Mapping[str, Any], tokens: int, stats: SweepStats | None):
    """``inputs`` extended with the full model's first ``tokens - 1`` greedy tokens.

    The withdrawn and full distributions are then compared at the same positions of the same
    (full-model) continuation, i.e. teacher-forced; EOS is held back so every sample scores
    ``tokens`` positions.
    """
    import torch

    if tokens <= 1:
        return dict(inputs)
    clock = sweep_clock(model)
    t0 = clock.now()
    with torch.inference_mode():
        seq = model.generate(
            **inputs, max_new_tokens=tokens - 1, min_new_tokens=tokens - 1, do_sample=False, num_beams=1
        )
    if stats is not None:
        stats.generate_seconds += clock.now() - t0
    length = inputs["input_ids"].shape[1]
    return extend_inputs(inputs, seq[:, length : length + tokens - 1])


def sweep_clock(model) -> Clock:
    """The sweep's timer: every device the model spans is synchronized before each reading,
    so queued CUDA kernels count in the stage that launched them."""
    return Clock(model_devices(model))


def _layer_call(layer, hidden, kwargs):
    out = layer(hidden, **kwargs)
    return out[0] if isinstance(out, tuple) else out


def _mask_for_layer(parts: ModelParts, j: int, hidden, valid_2d):
    from vtwcli.engine.masks import causal_mask

    layer_types = getattr(parts.text_config, "layer_types", None)
    sliding = layer_types is not None and layer_types[j] == "sliding_attention"
    return causal_mask(parts.text_config, hidden, valid_2d, sliding=sliding)


def fast_sweep(
    model,
    inputs: Mapping[str, Any],
    k_values: Sequence[int],
    *,
    tokens: int = 1,
    direction: str = "withdrawn||full",
    parts: ModelParts | None = None,
    stats: SweepStats | None = None,
) -> dict[int, list[float]]:
    """Per-sample KL for every K in ``k_values`` (sorted, each in 1..N) from one full forward.

    Returns ``{K: [kl of sample 0, kl of sample 1, ...]}`` for the samples of this batch; with
    ``tokens > 1`` each sample's value is its mean over the first ``tokens`` positions.
    """
    import torch

    from vtwcli.engine import plain_decoder_reason

    if plain_decoder_reason(model) is not None:
        # sliding windows, recurrent layers, blocks, per-layer inputs, KV sharing: only the
        # engine follows the withdrawal rule for these, so every candidate runs through it
        return slow_sweep(model, inputs, k_values, tokens=tokens, direction=direction, stats=stats, parts=parts)
    parts = parts or model_parts(model)
    n_layers = parts.num_layers
    ks = sorted(set(int(k) for k in k_values))
    inputs = _continue_greedy(model, inputs, tokens, stats)
    input_ids = inputs["input_ids"]
    index, valid = text_index(input_ids, inputs.get("attention_mask"), parts.vision_token_ids)
    bsz = input_ids.shape[0]
    run_ks = [k for k in ks if k < n_layers]  # K = N withdraws nothing: its KL is 0 by definition
    first = run_ks[0] if run_ks else n_layers

    captured: dict[int, Any] = {}
    layer_kwargs: dict[str, Any] = {}

    def make_hook(j: int):
        def hook(module, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            # under a device map each layer's input lives on that layer's device
            captured[j] = gather_rows(hidden, index.to(hidden.device))
            if j == first:
                layer_kwargs.update(kwargs)
                layer_kwargs.pop("hidden_states", None)

        return hook

    handles = [
        parts.layers[j].register_forward_pre_hook(make_hook(j), with_kwargs=True) for j in range(first, n_layers)
    ]
    call_kwargs: dict[str, Any] = {"use_cache": False}
    if _accepts(model.forward, "logits_to_keep"):
        call_kwargs["logits_to_keep"] = tokens
    clock = sweep_clock(model)
    t0 = clock.now()
    try:
        with torch.inference_mode():
            out = model(**inputs, **call_kwargs)
    finally:
        for h in handles:
            h.remove()
    full_logits = out.logits[:, -tokens:]
    t1 = clock.now()

    result: dict[int, list[float]] = {}
    if run_ks:
        with torch.inference_mode():
            pe = layer_kwargs.get("position_embeddings")
            pe_text = tuple(gather_rows(x, index.to(x.device)) for x in pe) if pe is not None else None
            for key in _CACHE_KWARGS:
                if key in layer_kwargs:
                    layer_kwargs[key] = None
            if "cache_position" in layer_kwargs:
                layer_kwargs["cache_position"] = None
            layer_kwargs["use_cache"] = False
            layer_kwargs["position_ids"] = None
            state = None
            starts = set(run_ks)
            for j in range(first, n_layers):
                rows = captured.pop(j)
                if j in starts:
                    state = rows if state is None else torch.cat([state, rows.to(state.device)], dim=0)
                groups = state.shape[0] // bsz
                kwargs = dict(layer_kwargs)
                kwargs["attention_mask"] = _mask_for_layer(parts, j, state, valid.to(state.device).repeat(groups, 1))
                if pe_text is not None:
                    kwargs["position_embeddings"] = tuple(_repeat_batch(x.to(state.device), groups) for x in pe_text)
                state = _layer_call(parts.layers[j], state, kwargs)
            last = parts.norm(state[:, -tokens:])
            for c, k in enumerate(run_ks):
                logits = parts.lm_head(last[c * bsz : (c + 1) * bsz]).to(full_logits.device)
                kl = withdrawal_kl(logits, full_logits, direction).mean(dim=-1)
                result[k] = [float(v) for v in kl]
    t2 = clock.now()
    for k in ks:
        if k >= n_layers:
            result[k] = [0.0] * bsz
    if stats is not None:
        stats.full_seconds += t1 - t0
        stats.tail_seconds += t2 - t1
        _record_lengths(stats, inputs, valid)
    return {k: result[k] for k in ks}


def _record_lengths(stats: SweepStats, inputs: Mapping[str, Any], valid) -> None:
    ids = inputs["input_ids"]
    mask = inputs.get("attention_mask")
    totals = mask.sum(dim=1) if mask is not None else [ids.shape[1]] * ids.shape[0]
    texts = valid.sum(dim=1)
    for total, text in zip(totals, texts, strict=True):
        stats.prompt_lengths.append(int(total))
        stats.text_lengths.append(int(text))
        stats.vision_counts.append(int(total) - int(text))


def slow_sweep(
    model,
    inputs: Mapping[str, Any],
    k_values: Sequence[int],
    *,
    tokens: int = 1,
    direction: str = "withdrawn||full",
    stats: SweepStats | None = None,
    parts: ModelParts | None = None,
) -> dict[int, list[float]]:
    """The paper's loop: a full forward, then one forward per candidate K with the engine attached."""
    import torch

    from vtwcli.engine import withdraw

    ks = sorted(set(int(k) for k in k_values))
    inputs = _continue_greedy(model, inputs, tokens, stats)
    call_kwargs: dict[str, Any] = {"use_cache": False}
    clock = sweep_clock(model)
    t0 = clock.now()
    with torch.inference_mode():
        full_logits = model(**inputs, **call_kwargs).logits[:, -tokens:]
    t1 = clock.now()
    result: dict[int, list[float]] = {}
    with torch.inference_mode():
        for k in ks:
            with withdraw(model, k):
                logits = model(**inputs, **call_kwargs).logits[:, -tokens:]
            kl = withdrawal_kl(logits, full_logits, direction).mean(dim=-1)
            result[k] = [float(v) for v in kl]
    t2 = clock.now()
    if stats is not None:
        stats.full_seconds += t1 - t0
        stats.tail_seconds += t2 - t1
        if parts is not None:
            _, valid = text_index(inputs["input_ids"], inputs.get("attention_mask"), parts.vision_token_ids)
            _record_lengths(stats, inputs, valid)
    return result
