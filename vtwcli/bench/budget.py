"""Memory budgets: parsing ``--memory-budget``, and an analytic model of a batch's peak memory.

The model predicts, for each method, the peak memory of one greedy ``generate()`` call on a
left-padded batch, from the model's config and the token counts alone:

    peak(B) = fixed + B * per_sample

``fixed`` is what is held before the call (the weights and buffers; on CPU the measured
resident memory of the loaded process). ``per_sample`` is the largest of three phases, each
proportional to the batch:

- *prefill, full length*: the KV cache of the layers that see every token (all layers for the
  baseline, layers < K with withdrawal) plus the activations of one decoder layer over the
  whole prompt (see :func:`layer_activation_bytes`) and the attention mask;
- *prefill, after withdrawal* (layers >= K): the whole prompt's KV cache as withdrawal leaves
  it, plus the activations over the kept tokens, plus what still spans the full prompt (the
  embeddings and the full-length mask);
- *decode*: the KV cache at the end of generation (prompt plus generated tokens, exact per
  layer, see :func:`kept_tokens_per_layer`), plus one layer's key or value being copied as
  the cache grows, plus the last token's logits.

The vision tower runs before the decoder and holds nothing afterwards; its own peak is a
fourth phase. KV-cache terms are exact (they are what the returned cache holds); the
activation terms are estimates of the live tensors of a Llama-style layer, checked against
measurement in docs/bench.md. Left padding pads every row to the batch's longest prompt, so
the counts given here are the batch's largest.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from vtwcli.errors import UsageError

_UNITS = {
    "": None,  # a bare number is refused: "20" could mean bytes or GiB
    "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
    "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40,
}  # fmt: skip
_BUDGET_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zA-Z]*)\s*$")
_EXAMPLES = "e.g. 20GiB, 512MiB or 1.5GB (GiB/MiB/KiB are powers of 1024, GB/MB/KB of 1000)"


def parse_memory_budget(value: str | int | float) -> int:
    """Bytes in a budget like ``"20GiB"``, ``"512MiB"``, ``"1.5GB"`` or ``"24G"`` (= GiB).

    An int is taken as bytes. Anything else (no unit, an unknown unit, zero, negative, text)
    raises :class:`UsageError` with one line that says what is accepted.
    """
    if isinstance(value, bool):
        raise UsageError(f"--memory-budget must be a size such as 20GiB, got {value!r}")
    if isinstance(value, int):
        number, scale = float(value), 1
    elif isinstance(value, float):
        raise UsageError(f"--memory-budget needs a unit ({_EXAMPLES}), got {value!r}")
    else:
        m = _BUDGET_RE.match(str(value))
        if not m:
            raise UsageError(f"--memory-budget {value!r} is not a size; give a number and a unit, {_EXAMPLES}")
        number, unit = float(m.group(1)), m.group(2).lower()
        if unit not in _UNITS:
            raise UsageError(f"--memory-budget {value!r} has an unknown unit {m.group(2)!r}; {_EXAMPLES}")
        scale = _UNITS[unit]
        if scale is None:
            raise UsageError(f"--memory-budget {value!r} has no unit; {_EXAMPLES}")
    total = int(number * scale)
    if total <= 0 or not math.isfinite(number):
        raise UsageError(f"--memory-budget must be more than zero bytes, got {value!r}")
    return total


def format_bytes(n: float | None) -> str:
    """``1.50 GiB``-style text (binary units), ``-`` for None."""
    if n is None:
        return "-"
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


def check_budget(budget: int, weights: int, *, model_name: str = "the model", what: str = "weights") -> None:
    """Refuse a budget that cannot even hold the weights (one line, what to do)."""
    if budget <= weights:
        raise UsageError(
            f"--memory-budget {format_bytes(budget)} is below the {format_bytes(weights)} that {model_name}'s "
            f"{what} alone take; give a budget above {format_bytes(weights)} (or a smaller --dtype)"
        )


# ---------------------------------------------------------------- sizes from the model


def weights_bytes(model: Any) -> int:
    """Bytes of the parameters and buffers of a loaded ``torch.nn.Module`` (shared storages once)."""
    seen: set[tuple[str, int]] = set()
    total = 0
    for t in list(model.parameters()) + list(model.buffers()):
        if t.device.type == "meta":
            total += t.numel() * t.element_size()
            continue
        key = (str(t.device), t.untyped_storage().data_ptr())
        if key in seen:
            continue
        seen.add(key)
        total += t.untyped_storage().nbytes()
    return total


def weights_bytes_from_config(config: Any, dtype: Any) -> int:
    """Bytes the weights of ``config``'s model take in ``dtype``, built on the meta device
    (no memory, no download): for predictions about models too large to load here."""
    import torch
    from transformers import AutoModelForImageTextToText

    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
    return weights_bytes(model)


# ---------------------------------------------------------------- token counts


def kept_tokens_per_layer(
    method: str,
    *,
    num_layers: int,
    prompt_tokens: int,
    vision_tokens: int,
    new_tokens: int = 0,
    k: int | None = None,
    ratio: float = 0.5,
) -> list[int]:
    """Tokens each decoder layer's KV cache holds after ``new_tokens`` were generated.

    The last generated token is never fed back, so a cache holds ``prompt + new - 1`` tokens
    in a layer that saw the whole prompt (``prompt`` before any token is generated).
    ``vtw`` and ``rand``: layers >= K hold the prompt minus its vision tokens (as many random
    prompt tokens for ``rand``); ``fastv``: minus the pruned share, rounded as FastV rounds.
    """
    from vtwcli.engine.select import fastv_keep_count

    if prompt_tokens <= 0 or not 0 <= vision_tokens <= prompt_tokens or new_tokens < 0:
        raise UsageError(
            f"token counts need prompt > 0, 0 <= vision <= prompt and new >= 0 "
            f"(got prompt={prompt_tokens}, vision={vision_tokens}, new={new_tokens})"
        )
    grown = max(0, new_tokens - 1)
    full = prompt_tokens + grown
    if method == "baseline":
        return [full] * num_layers
    if k is None or not 1 <= k <= num_layers:
        raise UsageError(f"K must be in 1..{num_layers} for method {method!r}, got {k!r}")
    if method in ("vtw", "rand"):
        # the prompt's last token is always kept (it is text in every real prompt)
        dropped = min(vision_tokens, prompt_tokens - 1)
    elif method == "fastv":
        dropped = vision_tokens - fastv_keep_count(vision_tokens, ratio)
    else:
        raise UsageError(f"no memory model for method {method!r} (known: baseline, vtw, fastv, rand)")
    return [full] * k + [full - dropped] * (num_layers - k)


# ---------------------------------------------------------------- the model


@dataclass
class Geometry:
    """What the memory model reads from a model's config (text decoder and vision tower)."""

    num_layers: int
    hidden_size: int
    intermediate_size: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab_size: int
    element_size: int  # bytes per activation / cache element (the model's dtype)
    attn: str = "sdpa"
    vision_tokens_per_image: int | None = None  # the tower's sequence length per image
    vision_hidden: int | None = None
    vision_intermediate: int | None = None
    vision_heads: int | None = None

    @property
    def kv_bytes_per_token_layer(self) -> int:
        return 2 * self.kv_heads * self.head_dim * self.element_size

    @classmethod
    def from_config(cls, config: Any, *, element_size: int, attn: str = "sdpa") -> Geometry:
        text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
        heads = int(text.num_attention_heads)
        kv_heads = int(getattr(text, "num_key_value_heads", None) or heads)
        head_dim = int(getattr(text, "head_dim", None) or text.hidden_size // heads)
        vis = getattr(config, "vision_config", None)
        v_tokens = v_hidden = v_inter = v_heads = None
        if vis is not None:
            v_hidden = getattr(vis, "hidden_size", None)
            v_inter = getattr(vis, "intermediate_size", None)
            v_heads = getattr(vis, "num_attention_heads", None)
            size, patch = getattr(vis, "image_size", None), getattr(vis, "patch_size", None)
            if isinstance(size, int) and isinstance(patch, int) and patch > 0:
                v_tokens = (size // patch) ** 2 + 1  # patches plus the class token
        return cls(
            num_layers=int(text.num_hidden_layers),
            hidden_size=int(text.hidden_size),
            intermediate_size=int(getattr(text, "intermediate_size", None) or 4 * text.hidden_size),
            heads=heads,
            kv_heads=kv_heads,
            head_dim=head_dim,
            vocab_size=int(text.vocab_size),
            element_size=int(element_size),
            attn=attn,
            vision_tokens_per_image=v_tokens,
            vision_hidden=None if v_hidden is None else int(v_hidden),
            vision_intermediate=None if v_inter is None else int(v_inter),
            vision_heads=None if v_heads is None else int(v_heads),
        )


def layer_activation_bytes(geo: Geometry, tokens: int) -> int:
    """Estimated live activations of one Llama-style decoder layer over ``tokens`` tokens of
    one sample: the residual stream and the normed input (2h), the MLP at its widest
    (``act(gate)``, ``up`` and their product: 3 x intermediate) and the output (h); with
    eager attention also the score and probability matrices (2 x heads x tokens^2)."""
    e = geo.element_size
    out = tokens * (3 * geo.hidden_size + 3 * geo.intermediate_size) * e
    if geo.attn == "eager":
        out += 2 * geo.heads * tokens * tokens * e
    return out


def mask_bytes(geo: Geometry, tokens: int) -> int:
    """A [1, tokens, tokens] mask per sample: booleans for sdpa, the dtype's floats for eager."""
    return tokens * tokens * (1 if geo.attn != "eager" else geo.element_size)


@dataclass
class Prediction:
    """One method's predicted memory per batch row, and the largest batch a budget allows."""

    method: str
    kv_end_bytes: int  # KV cache per sample at the end of generation (exact)
    per_sample_bytes: int  # the largest phase, per sample
    phases: dict[str, int] = field(default_factory=dict)  # per sample, each phase's bytes
    fixed_bytes: int = 0
    budget_bytes: int | None = None
    max_batch: int | None = None  # None without a budget

    def peak(self, batch: int) -> int:
        return self.fixed_bytes + batch * self.per_sample_bytes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def predict(
    geo: Geometry,
    method: str,
    *,
    prompt_tokens: int,
    vision_tokens: int,
    new_tokens: int,
    k: int | None = None,
    ratio: float = 0.5,
    images: int = 1,
    fixed_bytes: int = 0,
    budget_bytes: int | None = None,
) -> Prediction:
    """Predicted per-sample peak of ``method`` and, with a budget, the largest batch that fits.

    ``prompt_tokens`` is the padded prompt length (the batch's longest prompt),
    ``vision_tokens`` the vision tokens in it, ``new_tokens`` the tokens generated per row.
    """
    n, e = geo.num_layers, geo.element_size
    per_tok = geo.kv_bytes_per_token_layer
    prompt_layers = kept_tokens_per_layer(method, num_layers=n, prompt_tokens=prompt_tokens,
                                          vision_tokens=vision_tokens, new_tokens=0, k=k, ratio=ratio)  # fmt: skip
    end_layers = kept_tokens_per_layer(method, num_layers=n, prompt_tokens=prompt_tokens,
                                       vision_tokens=vision_tokens, new_tokens=new_tokens, k=k, ratio=ratio)  # fmt: skip
    kv_end = sum(end_layers) * per_tok
    full = prompt_tokens
    full_layers = n if method == "baseline" else int(k)
    short = prompt_layers[-1]
    embeds = full * geo.hidden_size * e  # the merged text+vision embeddings, held through the decoder
    phases = {
        "prefill_full": sum(prompt_layers[:full_layers]) * per_tok + layer_activation_bytes(geo, full)
        + mask_bytes(geo, full) + embeds,
        "decode": kv_end + max(end_layers) * per_tok // 2 + geo.vocab_size * (e + 4),
    }
    if full_layers < n:
        phases["prefill_withdrawn"] = (
            sum(prompt_layers) * per_tok + layer_activation_bytes(geo, short) + mask_bytes(geo, short)
            + mask_bytes(geo, full) + embeds
        )
    if geo.vision_tokens_per_image and geo.vision_hidden and geo.vision_intermediate:
        vt = geo.vision_tokens_per_image
        vis = images * vt * (3 * geo.vision_hidden + 3 * geo.vision_intermediate) * e
        if geo.attn == "eager" and geo.vision_heads:
            vis += images * 2 * geo.vision_heads * vt * vt * e
        phases["vision"] = vis + embeds
    per_sample = max(phases.values())
    pred = Prediction(method=method, kv_end_bytes=kv_end, per_sample_bytes=per_sample, phases=phases,
                      fixed_bytes=int(fixed_bytes), budget_bytes=budget_bytes)  # fmt: skip
    if budget_bytes is not None:
        room = budget_bytes - fixed_bytes
        pred.max_batch = max(0, room // per_sample) if per_sample > 0 else None
    return pred
