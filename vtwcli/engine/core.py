"""The withdrawal engine: forward pre-hooks on an unmodified Hugging Face model.

Nothing is replaced: hooks on the multimodal base model (mark vision positions, read the
model's bidirectional blocks), the text decoder (cache, padding, DeepStack injections), layer
K (choose the kept rows, gather the hidden states) and every layer >= K (its own mask for its
layer type, its own per-token inputs gathered at the kept rows). Layers >= K therefore run on,
and cache, only the kept tokens; their original positions are kept (vtwcli/engine/positions.py).

The rule, for every family: after withdrawal each kept token sees exactly what it saw in the
unmodified model minus the withdrawn tokens. Attention layers >= K get the model's own mask
restricted to the kept tokens with every limit on original positions (vtwcli/engine/masks.py);
linear-attention and convolution layers >= K run on the kept tokens only (their state never
holds a withdrawn token); DeepStack injections into layers >= K are dropped.

``fastv-mask`` is FastV's own masking implementation: the same kept set as ``fastv``, but layers
>= K run on, and cache, every token; the pruned vision tokens are masked out as keys (each is
still its own key, so no mask row is empty) in prefill and every decode step. The kept tokens
see exactly what they see under ``fastv``; the cache is the baseline's.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import torch

from vtwcli.archs import ArchRecord, get_arch
from vtwcli.engine import positions, select
from vtwcli.engine import positions as _positions
from vtwcli.engine.masks import CHUNKED, FULL, RECURRENT, SLIDING, layer_kind, recurrent_mask, withdrawn_mask
from vtwcli.errors import (
    AlreadyPatchedError,
    KOutOfRangeError,
    NoVisionTokensError,
    UnsupportedModelError,
    UsageError,
)

METHODS = ("vtw", "fastv", "rand", "fastv-mask")
# the methods that rank vision tokens by layer K-1's attention (the same kept set)
FASTV_METHODS = ("fastv", "fastv-mask")
# the methods that keep every row in layers >= K and mask the pruned ones out as keys
MASK_METHODS = ("fastv-mask",)
_PIXEL_KWARGS = ("pixel_values", "pixel_values_videos", "pixel_values_images")
# the attribute that marks a model as patched (checked before anything is attached)
_ATTR = "_vtw_engine"
_FLASH = ("flash_attention_2", "flash_attention_3", "kernels-community/flash-attn", "paged_attention")


@dataclass
class PrefillStats:
    """What the last prefill (a call with vision tokens and an empty cache) did, per row.

    ``length``: real (non-padding) tokens; ``vision``: vision tokens among them; ``kept``:
    tokens that layers >= K saw (``length`` when K = N; for ``fastv-mask``, which computes
    every row there, the tokens other rows may attend to); ``keep_mask``: [B, L] bool over the
    call's positions (True = seen by layers >= K), on the CPU.
    """

    length: list[int]
    vision: list[int]
    kept: list[int]
    keep_mask: torch.Tensor | None = field(default=None, repr=False)

    @property
    def withdrawn(self) -> list[int]:
        return [n - k for n, k in zip(self.length, self.kept, strict=True)]


@dataclass
class _Call:
    cache: object
    past: int  # the full timeline's length before this call (layers < K)
    valid: torch.Tensor  # [B, L] real tokens of this call
    vision: torch.Tensor | None  # [B, L] vision tokens (a prefill with vision only)
    blocks: torch.Tensor | None  # [B, L] the model's own bidirectional block ids, -1 = none
    index: torch.Tensor | None = None  # [B, T] kept rows (set at layer K when withdrawing)
    rows_valid: torch.Tensor | None = None  # [B, T] this call's rows in layers >= K that are real
    masks: dict = field(default_factory=dict)
    memo: dict = field(default_factory=dict)


@dataclass
class _Timeline:
    """What the attention layers >= K hold, slot by slot, across calls (one generate())."""

    valid: torch.Tensor  # [B, S] bool
    pos: torch.Tensor  # [B, S] original timeline index
    blocks: torch.Tensor  # [B, S] block id, -1 = none
    full_length: int  # the full timeline's length after the last call
    # over the full timeline (what layers < K hold): real and not withdrawn, and block ids;
    # read by a KV-shared layer >= K that attends to the keys of a layer < K
    full_keep: torch.Tensor | None = None
    full_blocks: torch.Tensor | None = None
    # fastv-mask: [B, S] the slots any query may attend to (a pruned slot: its own query only)
    keys: torch.Tensor | None = None


@dataclass
class EngineHandle:
    """An engine attached to one model. ``remove()`` detaches it (idempotent)."""

    model: torch.nn.Module = field(repr=False)
    arch: ArchRecord = field(repr=False)
    k: int
    num_layers: int
    method: str = "vtw"
    ratio: float = 0.5
    seed: int = 0
    positions: str = "keep"  # "rearrange": layers >= K renumber the tokens they hold (positions.py)
    last_prefill: PrefillStats | None = None
    prefills: int = 0
    _hooks: list = field(default_factory=list, repr=False)
    _kinds: list = field(default_factory=list, repr=False)  # per decoder layer: full/sliding/recurrent
    _types: list = field(default_factory=list, repr=False)  # per decoder layer: the config's layer type
    _shared_from: dict = field(default_factory=dict, repr=False)  # KV-shared layer >= K -> producer < K
    _sized_by: dict = field(default_factory=dict, repr=False)  # KV-shared layer >= K -> producer >= K
    _rotary: object = field(default=None, repr=False)  # positions="rearrange": the decoder's rotary module
    _call: _Call | None = field(default=None, repr=False)
    _call_vision: torch.Tensor | None = field(default=None, repr=False)
    _call_blocks: torch.Tensor | None = field(default=None, repr=False)
    _call_mask2d: torch.Tensor | None = field(default=None, repr=False)
    _prefill_pending: bool = field(default=False, repr=False)
    _timeline: _Timeline | None = field(default=None, repr=False)
    _scores: torch.Tensor | None = field(default=None, repr=False)

    @property
    def active(self) -> bool:
        return bool(self._hooks)

    @property
    def withdraws(self) -> bool:
        return self.k < self.num_layers

    @property
    def masks_only(self) -> bool:
        """Layers >= K keep every row and mask the pruned ones out as keys (``fastv-mask``)."""
        return self.method in MASK_METHODS

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
        self._call = self._timeline = self._scores = self._call_vision = self._call_blocks = None
        self._call_mask2d = None
        if getattr(self.model, _ATTR, None) is self:
            delattr(self.model, _ATTR)

    def __enter__(self) -> EngineHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    # ------------------------------------------------------------------ hooks
    def _on_base(self, module, args, kwargs):
        cache = _cache_from(kwargs)
        past = _past_length(cache)
        self._call_blocks = self.arch.blocks(kwargs, past == 0 or _has_pixels(kwargs), self.model.config)
        # the caller's 2D padding mask over the full timeline: some families hand the decoder 4D
        # masks sized against a layer that may be >= K, which cannot say which tokens are real
        mask = kwargs.get("attention_mask")
        self._call_mask2d = mask if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None
        if past > 0:
            if _has_pixels(kwargs):
                raise UsageError(
                    "vtw: new images in a call that continues a cached conversation are not supported; "
                    "start a new generate() call with the whole conversation instead."
                )
            # a decode step: generated tokens are text even if one equals a placeholder id
            self._call_vision = None
            self._prefill_pending = False
            return None
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        ids = self.arch.placeholder_ids(self.model.config)
        if input_ids is not None:
            vision = torch.isin(input_ids, torch.tensor(ids, device=input_ids.device))
        else:
            embeds = kwargs.get("inputs_embeds")
            table = module.get_input_embeddings().weight
            vision = torch.zeros(embeds.shape[:2], dtype=torch.bool, device=embeds.device)
            for i in ids:
                vision |= (embeds == table[i].to(embeds.dtype)).all(-1)
        if not bool(vision.any()):
            raise NoVisionTokensError(
                f"vtw: the inputs hold no image or video placeholder token (ids {list(ids)} of "
                f"{self.arch.family}), so there is nothing to withdraw. Build the inputs with the model's "
                "processor and an image/video, or run text-only prompts without the engine."
            )
        self._call_vision = vision
        self._prefill_pending = True
        return None

    def _on_text(self, module, args, kwargs):
        cache = _cache_from(kwargs)
        embeds = kwargs.get("inputs_embeds")
        if embeds is None:
            embeds = module.get_input_embeddings()(kwargs.get("input_ids", args[0] if args else None))
        batch, length = embeds.shape[:2]
        past = _past_length(cache)
        given = kwargs.get("attention_mask")
        base_mask, self._call_mask2d = self._call_mask2d, None
        if not (isinstance(given, torch.Tensor) and given.dim() == 2) and base_mask is not None:
            if base_mask.shape[0] == batch and base_mask.shape[1] >= length:
                given = base_mask
        valid = _validity(given, batch, length, past, embeds.device)
        vision = self._call_vision if self._prefill_pending else None
        if vision is not None and tuple(vision.shape) != (batch, length):
            self._call_vision, self._call_blocks, self._prefill_pending = None, None, False
            raise UnsupportedModelError(
                f"vtw: the vision mask built from the model's input ids has shape {tuple(vision.shape)} but its "
                f"{self.arch.family} text decoder received {batch} x {length} tokens, so the engine cannot tell "
                "which decoder positions hold vision tokens (it would silently run the full model). This model "
                "changes the sequence between its input ids and its decoder; it is not supported by the engine."
            )
        blocks = self._call_blocks
        if blocks is not None and blocks.shape != (batch, length):
            blocks = None
        self._call_vision, self._call_blocks, self._prefill_pending = None, None, False
        if past == 0:
            self._timeline = None
        self._call = _Call(cache=cache, past=past, valid=valid, vision=vision, blocks=blocks)
        self._scores = None
        if vision is not None:
            self.prefills += 1
            n_valid = valid.sum(1)
            self.last_prefill = PrefillStats(
                length=n_valid.tolist(),
                vision=(vision & valid).sum(1).tolist(),
                kept=n_valid.tolist(),
            )
        name = self.arch.deepstack_kwarg
        if name is not None and self.withdraws and kwargs.get(name) is not None:
            # injection i is added to layer i's output, i.e. layer i+1's input: those into layers
            # >= K + 1 would land on rows that no longer exist (the one into layer K lands on rows
            # withdrawn right away); a vision row kept by FastV gets none after K either
            return args, dict(kwargs, **{name: list(kwargs[name])[: self.k]})
        return None

    def _start_withdrawn(self, hidden):
        """At layer K: choose the kept rows of a prefill and extend the withdrawn timeline."""
        call = self._call
        batch, length = hidden.shape[:2]
        index = None
        rows_valid = call.valid
        blocks = call.blocks
        keep_full = call.valid
        if call.vision is not None:
            keep = self._choose(call)
            keep_full = keep & call.valid
            stats = self.last_prefill
            stats.keep_mask = keep.cpu()
            if self.masks_only:
                stats.kept = keep_full.sum(1).tolist()
            else:
                index, filled = select.right_aligned_index(keep)
                rows_valid = filled & call.valid.gather(1, index)
                if blocks is not None:
                    blocks = torch.where(filled, blocks.to(index.device).gather(1, index), -1)
                stats.kept = rows_valid.sum(1).tolist()
                batch, length = index.shape
        pos = positions.timeline_positions(index, call.past, batch, length, rows_valid.device)
        device = rows_valid.device
        if blocks is None:
            blocks = torch.full((batch, length), -1, dtype=torch.long, device=device)
        call_blocks = call.blocks if call.blocks is not None else torch.full_like(keep_full, -1, dtype=torch.long)
        prev = self._timeline
        if call.cache is None or call.past == 0:
            prev = None
        elif prev is None or prev.full_length != call.past or prev.valid.shape[0] != batch:
            # cache filled without the engine (or reshaped): what is cached is the full timeline
            ones = torch.ones(batch, call.past, dtype=torch.bool, device=device)
            none = torch.full((batch, call.past), -1, dtype=torch.long, device=device)
            prev = _Timeline(valid=ones, pos=torch.arange(call.past, device=device).expand(batch, -1), blocks=none,
                             full_length=call.past, full_keep=ones, full_blocks=none,
                             keys=ones if self.masks_only else None)
        full_length = call.past + call.valid.shape[1]
        # fastv-mask: every row stays; the keys other queries may see are the kept ones
        keys = keep_full.to(device) if self.masks_only else None
        if prev is not None:
            timeline = _Timeline(
                valid=torch.cat([prev.valid, rows_valid], 1), pos=torch.cat([prev.pos, pos], 1),
                blocks=torch.cat([prev.blocks, blocks.to(device)], 1), full_length=full_length,
                full_keep=torch.cat([prev.full_keep, keep_full.to(device)], 1),
                full_blocks=torch.cat([prev.full_blocks, call_blocks.to(device)], 1),
                keys=None if keys is None else torch.cat([prev.keys, keys], 1),
            )
        else:
            timeline = _Timeline(valid=rows_valid, pos=pos, blocks=blocks, full_length=full_length,
                                 full_keep=keep_full.to(device), full_blocks=call_blocks.to(device), keys=keys)
        self._timeline = timeline if call.cache is not None else None
        call.index, call.rows_valid = index, rows_valid
        call.masks["timeline"] = timeline

    def _on_withdrawn_layer(self, i: int):
        kind = self._kinds[i]

        def hook(module, args, kwargs):
            call = self._call
            if call is None:
                return None
            hidden = args[0] if args else kwargs["hidden_states"]
            if i == self.k:
                self._start_withdrawn(hidden)
                q, length = hidden.shape[1], call.valid.shape[1]
                if call.index is not None and q == length:
                    # under a device map, layer K-1's outputs may sit on another device than `keep`
                    hidden = select.gather_rows(hidden, call.index.to(hidden.device))
                elif call.index is not None and not bool(self.last_prefill.keep_mask[:, length - q:].all()):
                    # the model cut its rows to the last q before layer K (Gemma 4 before its
                    # KV-shared layers): fine when all of them are kept (they are the rows it returns)
                    raise UsageError(
                        f"vtw: this {self.arch.family} model keeps only its last {q} rows before layer {i}, and "
                        "some of them are withdrawn; ask for fewer logits (logits_to_keep) or choose another K."
                    )
            producer = self._shared_from.get(i)
            if producer is not None:
                mask = self._shared_mask(i, kind, hidden, kwargs)
            else:
                mask = _rows_for(self._mask(i, kind, hidden, kwargs.get("attention_mask")), hidden.shape[1])
            new = dict(kwargs, attention_mask=mask)
            if "position_ids" in new:
                new["position_ids"] = None
            rest = args[1:]
            if self.positions == "rearrange" and "position_embeddings" in new:
                new["position_embeddings"] = positions.rearranged_position_embeddings(
                    self._rotary, hidden, call.masks["timeline"].valid, call.memo, mrope=self.arch.mrope
                )
            elif call.index is not None:
                length = call.valid.shape[1]
                for name in self.arch.per_token_kwargs:
                    if name in new:
                        new[name] = positions.kept_position_inputs(new[name], call.index, length, call.memo)
                rest = tuple(
                    positions.kept_position_inputs(a, call.index, length, call.memo)
                    if j + 1 in self.arch.per_token_args else a
                    for j, a in enumerate(rest)
                )
            if args:
                return (hidden, *rest), new
            new["hidden_states"] = hidden
            return args, new

        return hook

    def _mask(self, i: int, kind: str, hidden, given):
        """Layer i's mask (one per layer kind and call, built at the first layer of that kind)."""
        call = self._call
        masks = call.masks
        if kind in masks:
            return masks[kind]
        if kind == RECURRENT:
            mask = recurrent_mask(call.rows_valid.to(hidden.device), given)
        else:
            timeline = masks["timeline"]
            text_cfg = self.arch.text_config(self.model.config)
            blocks = timeline.blocks if kind in self.arch.block_kinds else None
            # a KV-shared layer has no cache of its own: size its mask against its producer's
            size_idx = self._sized_by.get(i, i)
            mask = withdrawn_mask(
                text_cfg, kind, hidden, timeline.valid, timeline.pos, blocks, call.cache, size_idx,
                window=getattr(text_cfg, "sliding_window", None), window_over_blocks=self.arch.window_over_blocks,
                keys=timeline.keys,
            )
        masks[kind] = mask
        return mask

    def _shared_mask(self, i: int, kind: str, hidden, kwargs):
        """The mask of a KV-shared layer >= K whose keys come from a layer < K: those keys span
        the full timeline, so every withdrawn column is hidden from the kept queries; the rest
        is the model's rule (causal, window, blocks) on original positions."""
        call = self._call
        timeline = call.masks["timeline"]
        shared = kwargs.get("shared_kv_states") or {}
        layer_type = self._types[i]
        keys = shared[layer_type][0] if layer_type in shared else None
        if keys is None:
            raise RuntimeError(f"vtw: layer {i} shares keys it was not given (internal error)")
        kv = keys.shape[-2]
        device = hidden.device
        q = hidden.shape[1]
        qpos = timeline.pos[:, -q:].to(device)  # [B, q]
        kpos = torch.arange(timeline.full_length - kv, timeline.full_length, device=device)  # [kv]
        allowed = (kpos[None, None, :] <= qpos[:, :, None]) & timeline.full_keep[:, -kv:].to(device)[:, None, :]
        if kind in self.arch.block_kinds:
            qb = timeline.blocks[:, -q:].to(device)[:, :, None]
            kb = timeline.full_blocks[:, -kv:].to(device)[:, None, :]
            allowed = allowed | ((qb == kb) & (qb >= 0) & timeline.full_keep[:, -kv:].to(device)[:, None, :])
        if kind == SLIDING:
            window = self.arch.text_config(self.model.config).sliding_window
            allowed = allowed & (qpos[:, :, None] - kpos[None, None, :] < window)
        if self.masks_only:
            # fastv-mask: a pruned row is still a query; it sees its own key (no empty mask row)
            real = timeline.valid[:, -q:].to(device)[:, :, None]
            allowed = allowed | ((kpos[None, None, :] == qpos[:, :, None]) & real)
        allowed = allowed[:, None]  # [B, 1, q, kv]
        impl = self.arch.text_config(self.model.config)._attn_implementation
        if impl == "eager":
            return torch.zeros(allowed.shape, dtype=hidden.dtype, device=device).masked_fill(
                ~allowed, torch.finfo(hidden.dtype).min)
        return allowed

    def _on_text_done(self, module, args, kwargs, output):
        # drop per-call tensors so nothing large outlives the forward
        self._call = None
        self._scores = None
        return None

    def _choose(self, call: _Call) -> torch.Tensor:
        if self.method == "vtw":
            return select.keep_vtw(call.valid, call.vision)
        if self.method == "rand":
            return select.keep_rand(call.valid, call.vision, self.seed)
        # fastv and fastv-mask
        if self._scores is None:
            raise RuntimeError("fastv: layer K-1 attention was not recorded (internal error)")
        return select.keep_fastv(call.valid, call.vision, self._scores, self.ratio)

    # FastV: the last token's attention at layer K-1, recorded around the real kernel
    def _arm_probe(self, module, args, kwargs):
        call = self._call
        if call is None or call.vision is None:
            return None
        _install_probe(self, module)
        return None

    def _disarm_probe(self, module, args, output):
        _uninstall_probe(module)
        return None

    def _record_scores(self, query, key, scaling):
        call = self._call
        length = call.valid.shape[1]
        q = query[:, :, -1].float()  # [B, H, D]
        # this call's keys only: its slots past..past+length (a static cache's buffer is longer)
        keys = key[:, :, call.past : call.past + length].float()
        groups = q.shape[1] // keys.shape[1]
        keys = keys.repeat_interleave(groups, dim=1)
        logits = torch.einsum("bhd,bhkd->bhk", q, keys) * scaling
        logits = logits.masked_fill(~call.valid.to(logits.device)[:, None, :], float("-inf"))
        # back to where the keep decision is made (the embeddings' device under a device map)
        self._scores = logits.softmax(-1).mean(1).to(call.valid.device)


# The attention-interface entry the probe temporarily overrides, per implementation key.
_PROBE_STATE: dict = {}


def _install_probe(handle: EngineHandle, module) -> None:
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    impl = module.config._attn_implementation
    had_local = impl in ALL_ATTENTION_FUNCTIONS._local_mapping
    previous = ALL_ATTENTION_FUNCTIONS._local_mapping.get(impl)
    if had_local:
        # someone's wrapper is installed (vtw inspect's probe, also for "eager"): call through it
        real = previous
    elif impl == "eager" or impl not in ALL_ATTENTION_FUNCTIONS:
        # "eager" is no registry key: each modeling file passes its own function as default
        real = sys.modules[type(module).__module__].eager_attention_forward
    else:
        real = ALL_ATTENTION_FUNCTIONS[impl]

    def probe(mod, query, key, value, attention_mask, *args, **kwargs):
        if mod is module:
            scaling = kwargs.get("scaling")
            if scaling is None:
                scaling = getattr(mod, "scaling", query.shape[-1] ** -0.5)
            handle._record_scores(query, key, scaling)
        return real(mod, query, key, value, attention_mask, *args, **kwargs)

    _PROBE_STATE[id(module)] = (impl, had_local, previous)
    ALL_ATTENTION_FUNCTIONS[impl] = probe


def _uninstall_probe(module) -> None:
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    state = _PROBE_STATE.pop(id(module), None)
    if state is None:
        return
    impl, had_local, previous = state
    if had_local:
        ALL_ATTENTION_FUNCTIONS._local_mapping[impl] = previous
    else:
        ALL_ATTENTION_FUNCTIONS._local_mapping.pop(impl, None)


# ---------------------------------------------------------------------- helpers
def _cache_from(kwargs):
    cache = kwargs.get("cache")
    return cache if cache is not None else kwargs.get("past_key_values")


def _past_length(cache) -> int:
    """The full timeline's length so far, read as the model reads it (``get_seq_length()``:
    layer 0, or the first attention layer of a hybrid cache; the engine requires it to be < K)."""
    if cache is None:
        return 0
    try:
        return int(cache.get_seq_length())
    except (IndexError, ValueError):
        return 0


def _rows_for(mask, q: int):
    """A 4D mask cut to the last ``q`` query rows (a model may slice its hidden states to the
    rows it returns logits for before its last layers: Gemma 4's KV-shared layers)."""
    if isinstance(mask, torch.Tensor) and mask.dim() == 4 and mask.shape[-2] > q:
        return mask[:, :, -q:]
    return mask


def _has_pixels(kwargs) -> bool:
    return any(kwargs.get(k) is not None for k in _PIXEL_KWARGS)


def _validity(mask, batch: int, length: int, past: int, device) -> torch.Tensor:
    """Which of this call's tokens are real, from whatever mask the decoder was given."""
    if isinstance(mask, dict):
        # the widest one covers the whole timeline (a sliding or withdrawn layer's is shorter)
        tensors = [m for m in mask.values() if isinstance(m, torch.Tensor)]
        mask = max(tensors, key=lambda m: m.shape[-1]) if tensors else None
    if mask is None or not isinstance(mask, torch.Tensor):
        return torch.ones(batch, length, dtype=torch.bool, device=device)
    if mask.dim() == 2:
        return mask[:, -length:].to(device=device, dtype=torch.bool)
    # a prepared 4D mask (static cache): token j is real iff it may attend to itself
    rows = torch.arange(length, device=mask.device)
    kv = mask.shape[-1]
    # this call's keys sit at past + rows (dynamic or static cache), or last in a shorter window
    cols = past + rows if kv >= past + length else kv - length + rows
    diag = mask[:, 0, rows if mask.shape[-2] == length else rows - length + mask.shape[-2], cols]
    ok = diag if diag.dtype == torch.bool else diag == 0
    return ok.expand(batch, length).to(device)


def _kv_sharing_modes(arch: ArchRecord, config) -> list:
    """Per layer: None, "store" (its keys are reused later) or "reuse" (it takes them). Read
    from the config (transformers 5.24 lists them); before that, derived the way the model
    does: the last ``num_kv_shared_layers`` layers reuse the last earlier layer of their type."""
    text = arch.text_config(config)
    modes = getattr(text, "kv_sharing_modes", None)
    if modes:
        return list(modes)
    shared = int(getattr(text, "num_kv_shared_layers", 0) or 0)
    if shared <= 0:
        return []
    types = arch.layer_types(config)
    first = len(types) - shared
    modes = [None if i < first else "reuse" for i in range(len(types))]
    for t in set(types):
        earlier = [i for i in range(first) if types[i] == t]
        if earlier:
            modes[earlier[-1]] = "store"
    return modes


def _kv_sharing(arch: ArchRecord, model, k: int, n: int) -> tuple[dict, dict]:
    """For KV-shared layers >= K (Gemma 4: the last layers reuse the keys and values of the last
    earlier layer of their type): those whose producer is < K (their keys hold every token) and
    those whose producer is >= K (their mask is sized against the producer's cache)."""
    modes = _kv_sharing_modes(arch, model.config)
    if not modes:
        return {}, {}
    types = arch.layer_types(model.config)
    producer = {types[i]: i for i, mode in enumerate(modes) if mode == "store"}
    below, above = {}, {}
    for i in range(k, n):
        if modes[i] == "reuse":
            p = producer.get(types[i])
            if p is None:
                raise UnsupportedModelError(f"vtw: layer {i} of this {arch.family} model shares keys with no layer.")
            (below if p < k else above)[i] = p
    return below, above


def _layer_plan(arch: ArchRecord, model, k: int, n: int, method: str) -> list[str]:
    """Each decoder layer's kind, after checking that layers >= K can follow the rule."""
    config = model.config
    types = arch.layer_types(config)
    kinds = [layer_kind(t) for t in types]
    unknown = sorted({t for t, kind in zip(types, kinds, strict=True) if kind is None})
    if unknown:
        raise UnsupportedModelError(
            f"vtw: this {arch.family} model has decoder layers of type {', '.join(unknown)}, which the engine "
            "does not know how to restrict to the kept tokens."
        )
    if k >= n:
        return kinds
    after = kinds[k:]
    if CHUNKED in after:
        raise UnsupportedModelError(
            f"vtw: layers {k}..{n - 1} of this {arch.family} model include chunked attention, whose chunks "
            "the engine does not carry onto the kept tokens; choose K past the last chunked layer."
        )
    attention = [i for i, kind in enumerate(kinds) if kind != RECURRENT]
    if attention and attention[0] >= k:
        raise KOutOfRangeError(
            f"vtw: K = {k} is too small for this {arch.family} model: its first attention layer ({attention[0]}) "
            "is where it counts the tokens seen so far, so that layer must still see every token. "
            f"Choose K between {attention[0] + 1} and {n}."
        )
    impl = getattr(arch.text_config(config), "_attn_implementation", None)
    modes = _kv_sharing_modes(arch, config)
    if impl not in ("eager", "sdpa") and any(m == "reuse" for m in modes[k:]):
        raise UnsupportedModelError(
            f"vtw: with {impl}, this {arch.family} model's KV-shared layers after K cannot be masked; "
            "load it with attn='sdpa' or 'eager'."
        )
    if impl in _FLASH and (SLIDING in after or arch.block_input is not None):
        raise UnsupportedModelError(
            f"vtw: with {impl}, this {arch.family} model's sliding windows and bidirectional blocks would count "
            "kept positions instead of original ones after withdrawal; load it with attn='sdpa' or 'eager'."
        )
    if method in MASK_METHODS:
        recurrent = [i for i in range(k, n) if kinds[i] == RECURRENT]
        if recurrent:
            raise UsageError(
                f"vtw: {method} masks the pruned vision tokens out of the attention of layers >= K, but "
                f"{'layer' if len(recurrent) == 1 else 'layers'} {', '.join(map(str, recurrent))} of this "
                f"{arch.family} model {'has' if len(recurrent) == 1 else 'have'} no attention (linear attention or "
                f"convolution) and cannot mask a token out; choose K > {recurrent[-1]} or use --method fastv."
            )
        if impl not in ("eager", "sdpa"):
            raise UsageError(
                f"vtw: {method} masks pruned tokens with a 4D attention mask, which {impl} does not take; "
                "load the model with attn='sdpa' or 'eager', or use --method fastv."
            )
    if method in FASTV_METHODS and kinds[k - 1] == RECURRENT:
        raise UsageError(
            f"vtw: {method} ranks vision tokens by layer K-1's attention, but layer {k - 1} of this {arch.family} "
            "model has no attention (linear attention or convolution); choose a K whose previous layer attends."
        )
    return kinds


def apply(
    model, k: int, method: str = "vtw", ratio: float = 0.5, seed: int = 0, positions: str = "keep"
) -> EngineHandle:
    """Attach the engine to ``model`` and return its handle (call ``handle.remove()`` to detach).

    K is the number of decoder layers that see the vision tokens (1..N; N withdraws nothing).
    ``positions``: ``keep`` (the paper's choice: kept tokens keep their original positions) or
    ``rearrange`` (layers >= K renumber the tokens they hold contiguously; the paper's Table 6).
    Every check runs before the model is touched.
    """
    arch = get_arch(model)
    arch.ensure_supported()
    n = arch.num_layers(model.config)
    if isinstance(k, bool) or not isinstance(k, int):
        raise KOutOfRangeError(f"vtw: K must be an integer between 1 and {n}, got {k!r}.")
    if not 1 <= k <= n:
        extra = " K = 0 would withdraw the vision tokens before any layer sees them, which is refused." if k == 0 else ""
        raise KOutOfRangeError(
            f"vtw: K = {k} is out of range for this model's {n} decoder layers.{extra} "
            f"Choose K between 1 and {n} (K = number of layers that see the vision tokens; K = {n} withdraws nothing), "
            "or run `vtw calibrate` to pick one."
        )
    if method not in METHODS:
        raise UsageError(f"vtw: unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    if method in FASTV_METHODS and not 0.0 <= float(ratio) <= 1.0:
        raise UsageError(f"vtw: {method} ratio must be between 0 and 1 (share of vision tokens pruned), got {ratio}.")
    if positions not in _positions.POLICIES:
        raise UsageError(f"vtw: positions must be one of {', '.join(_positions.POLICIES)}, got {positions!r}.")
    if method in MASK_METHODS and positions != "keep":
        raise UsageError(
            f"vtw: {method} keeps every token in layers >= K, so there is nothing to renumber; "
            f"positions='{positions}' goes with vtw, fastv or rand."
        )
    rotary = None
    if positions == "rearrange":
        rotary = _positions.rotary_module(arch.text_model(model))
        if rotary is None or tuple(arch.per_token_kwargs) != ("position_embeddings",) or arch.per_token_args:
            raise UnsupportedModelError(
                f"vtw: positions='rearrange' recomputes the rotary table from one rotary module; this {arch.family} "
                "decoder has none or several (per-layer variants). Use positions='keep'."
            )
    existing = getattr(model, _ATTR, None)
    if existing is not None and existing.active:
        raise AlreadyPatchedError(
            f"vtw: this model already has an engine attached (method {existing.method}, K = {existing.k}). "
            "Call handle.remove() (or leave its `with vtwcli.withdraw(...)` block) before attaching another."
        )
    kinds = _layer_plan(arch, model, k, n, method)
    layers = arch.decoder_layers(model)
    base, text = arch.base_model(model), arch.text_model(model)

    handle = EngineHandle(
        model=model, arch=arch, k=k, num_layers=n, method=method, ratio=float(ratio), seed=seed, positions=positions
    )
    handle._kinds = kinds
    handle._types = arch.layer_types(model.config)
    handle._shared_from, handle._sized_by = _kv_sharing(arch, model, k, n)
    handle._rotary = rotary
    hooks = handle._hooks
    try:
        hooks.append(base.register_forward_pre_hook(handle._on_base, with_kwargs=True))
        hooks.append(text.register_forward_pre_hook(handle._on_text, with_kwargs=True))
        hooks.append(text.register_forward_hook(handle._on_text_done, with_kwargs=True, always_call=True))
        if k < n:
            for i in range(k, n):
                hooks.append(layers[i].register_forward_pre_hook(handle._on_withdrawn_layer(i), with_kwargs=True))
            if method in FASTV_METHODS:
                attn = layers[k - 1].self_attn
                hooks.append(attn.register_forward_pre_hook(handle._arm_probe, with_kwargs=True))
                hooks.append(attn.register_forward_hook(handle._disarm_probe, always_call=True))
    except Exception:
        handle.remove()
        raise
    setattr(model, _ATTR, handle)
    return handle


def k_bounds(model) -> tuple[int, int]:
    """(smallest K the engine accepts for ``model``, N): hybrid decoders count the tokens seen
    so far in their first attention layer, so K must be past it."""
    arch = get_arch(model)
    n = arch.num_layers(model.config)
    kinds = [layer_kind(t) for t in arch.layer_types(model.config)]
    attention = [i for i, kind in enumerate(kinds) if kind not in (RECURRENT, None)]
    return (attention[0] + 1 if attention else 1), n


def accepted_ks(model, method: str = "vtw") -> list[int]:
    """Every K in 1..N that :func:`apply` accepts for ``model`` and ``method``: the same layer
    checks it runs (first attention layer, chunked and KV-shared layers after K, FastV's layer
    K-1 attending), nothing attached. Empty when the engine refuses the model at every K."""
    if method not in METHODS:
        raise UsageError(f"vtw: unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    arch = get_arch(model)
    n = arch.num_layers(model.config)
    out = []
    for k in range(1, n + 1):
        try:
            _layer_plan(arch, model, k, n, method)
            _kv_sharing(arch, model, k, n)
        except (KOutOfRangeError, UnsupportedModelError, UsageError):
            continue
        out.append(k)
    return out


def default_k(model, preferred: int, method: str = "vtw") -> int:
    """The K to use when the user gave none: ``preferred`` (clamped to 1..N) when the engine
    accepts it for ``model`` and ``method``, else the nearest accepted K, the larger one on a tie
    (a later K withdraws less). ``preferred`` itself when no K is accepted, so the engine's own
    refusal is what the user sees."""
    n = get_arch(model).num_layers(model.config)
    want = min(max(1, int(preferred)), n)
    ks = accepted_ks(model, method)
    if not ks or want in ks:
        return want
    return min(ks, key=lambda k: (abs(k - want), -k))


def plain_decoder_reason(model) -> str | None:
    """Why layers >= K of ``model`` cannot be run by hand with one causal mask, one rotary table
    and the hidden states alone (what a fast calibration sweep does), or None when they can.
    Anything else must go through the engine."""
    arch = get_arch(model)
    config = model.config
    kinds = {layer_kind(t) for t in arch.layer_types(config)}
    if kinds != {FULL}:
        return "its decoder has sliding-window, chunked or non-attention layers"
    if arch.block_input is not None:
        return "its mask has bidirectional blocks"
    if arch.per_token_args or tuple(arch.per_token_kwargs) != ("position_embeddings",):
        return "its layers take per-token inputs besides the rotary table"
    if _kv_sharing_modes(arch, config):
        return "its layers share keys and values"
    return None


def attached(model) -> EngineHandle | None:
    """The engine attached to ``model``, if any."""
    handle = getattr(model, _ATTR, None)
    return handle if handle is not None and handle.active else None
