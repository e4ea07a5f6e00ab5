"""How many bytes a KV cache really holds, and what it should hold.

``cache_bytes`` reads the tensors a cache object holds (transformers' ``Cache`` with its
``.layers``, or the legacy tuple of (key, value) pairs); it never assumes a layout, so a
withdrawn layer that holds fewer tokens is counted as what it holds. Each storage is counted
once even when two attributes share it. ``analytic_cache_bytes`` is the value expected from the
model's shapes, for checking the measurement.
"""

from __future__ import annotations

from typing import Any


def _tensors_of(obj: Any):
    import torch

    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _tensors_of(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors_of(item)


def _layer_entries(cache: Any) -> list[Any]:
    layers = getattr(cache, "layers", None)
    if layers is not None:
        return list(layers)
    # Encoder-decoder caches wrap a self-attention cache; vision-language decoders only use that one.
    inner = getattr(cache, "self_attention_cache", None)
    if inner is not None:
        return _layer_entries(inner)
    if isinstance(cache, (list, tuple)):
        return list(cache)
    raise TypeError(f"cannot read the KV cache of type {type(cache).__name__}")


def layer_bytes(cache: Any) -> list[int]:
    """Bytes held by each decoder layer of ``cache`` (unique storages only)."""
    out = []
    seen: set[tuple[str, int]] = set()
    for layer in _layer_entries(cache):
        attrs = layer if isinstance(layer, (list, tuple)) else vars(layer)
        total = 0
        for t in _tensors_of(attrs):
            if t.numel() == 0:
                continue
            key = (str(t.device), t.untyped_storage().data_ptr())
            if key in seen:
                continue
            seen.add(key)
            total += t.untyped_storage().nbytes()
        out.append(total)
    return out


def cache_bytes(cache: Any) -> int:
    """Total bytes held by ``cache``."""
    return sum(layer_bytes(cache))


def layer_seq_lengths(cache: Any) -> list[int]:
    """Tokens held by each layer (the key tensor's sequence axis)."""
    out = []
    for layer in _layer_entries(cache):
        keys = layer[0] if isinstance(layer, (list, tuple)) else getattr(layer, "keys", None)
        out.append(0 if keys is None or keys.numel() == 0 else int(keys.shape[-2]))
    return out


def kv_bytes_per_token_per_layer(text_config: Any, element_size: int) -> int:
    """Key plus value bytes one token costs in one decoder layer."""
    heads = text_config.num_attention_heads
    kv_heads = getattr(text_config, "num_key_value_heads", None) or heads
    head_dim = getattr(text_config, "head_dim", None) or text_config.hidden_size // heads
    return 2 * kv_heads * head_dim * element_size


def analytic_cache_bytes(
    text_config: Any,
    element_size: int,
    *,
    tokens_full: int,
    tokens_short: int | None = None,
    k: int | None = None,
    num_layers: int | None = None,
    batch: int = 1,
) -> int:
    """Expected bytes: ``k`` layers hold ``tokens_full`` tokens, the rest ``tokens_short``.

    Without ``k`` every layer holds ``tokens_full`` (the baseline).
    """
    n = num_layers if num_layers is not None else text_config.num_hidden_layers
    per = kv_bytes_per_token_per_layer(text_config, element_size) * batch
    if k is None:
        return n * tokens_full * per
    short = tokens_full if tokens_short is None else tokens_short
    return (k * tokens_full + (n - k) * short) * per
