"""The withdrawal engine: forward pre-hooks on an unmodified Hugging Face model.

Nothing is replaced: hooks on the multimodal base model (mark vision positions), the text
decoder (cache, padding), layer K (choose kept rows, gather hidden states and rotary rows,
build the shorter mask) and layers K+1.. (reuse that mask and those rotary rows). Layers
>= K therefore run on, and cache, only the kept tokens; their original positions are kept.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import torch

from vtwcli.archs import ArchRecord, get_arch
from vtwcli.engine import select
from vtwcli.engine.masks import causal_mask
from vtwcli.errors import (
    AlreadyPatchedError,
    KOutOfRangeError,
    NoVisionTokensError,
    UnsupportedModelError,
    UsageError,
)

METHODS = ("vtw", "fastv", "rand")
_PIXEL_KWARGS = ("pixel_values", "pixel_values_videos", "pixel_values_images")
# the attribute that marks a model as patched (checked before anything is attached)
_ATTR = "_vtw_engine"


@dataclass
class PrefillStats:
    """What the last prefill (a call with vision tokens and an empty cache) did, per row.

    ``length``: real (non-padding) tokens; ``vision``: vision tokens among them; ``kept``:
    tokens that layers >= K saw (``length`` when K = N); ``keep_mask``: [B, L] bool over the
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
    past: int
    valid: torch.Tensor
    vision: torch.Tensor | None


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
    last_prefill: PrefillStats | None = None
    prefills: int = 0
    _hooks: list = field(default_factory=list, repr=False)
    _call: _Call | None = field(default=None, repr=False)
    _call_vision: torch.Tensor | None = field(default=None, repr=False)
    _prefill_pending: bool = field(default=False, repr=False)
    _after_mask: torch.Tensor | None = field(default=None, repr=False)
    _substitute: tuple | None = field(default=None, repr=False)
    _scores: torch.Tensor | None = field(default=None, repr=False)

    @property
    def active(self) -> bool:
        return bool(self._hooks)

    @property
    def withdraws(self) -> bool:
        return self.k < self.num_layers

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
        self._call = self._after_mask = self._substitute = self._scores = self._call_vision = None
        if getattr(self.model, _ATTR, None) is self:
            delattr(self.model, _ATTR)

    def __enter__(self) -> EngineHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    # ------------------------------------------------------------------ hooks
    def _on_base(self, module, args, kwargs):
        cache = _cache_from(kwargs)
        past = _past_length(cache, 0)
        if past > 0:
            if any(kwargs.get(k) is not None for k in _PIXEL_KWARGS):
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
        past = _past_length(cache, 0)
        valid = _validity(kwargs.get("attention_mask"), batch, length, past, embeds.device)
        vision = self._call_vision if self._prefill_pending else None
        if vision is not None and vision.shape != (batch, length):
            vision = None
        self._call_vision, self._prefill_pending = None, False
        if past == 0:
            self._after_mask = None
        self._call = _Call(cache=cache, past=past, valid=valid, vision=vision)
        self._scores = None
        if vision is not None:
            self.prefills += 1
            n_valid = valid.sum(1)
            self.last_prefill = PrefillStats(
                length=n_valid.tolist(),
                vision=(vision & valid).sum(1).tolist(),
                kept=n_valid.tolist(),
            )
        return None

    def _on_layer_k(self, module, args, kwargs):
        call = self._call
        if call is None:
            return None
        hidden = args[0] if args else kwargs["hidden_states"]
        cos, sin = kwargs["position_embeddings"]
        new_valid = call.valid
        if call.vision is not None:
            keep = self._choose(call)
            index, filled = select.right_aligned_index(keep)
            # Under a device map, layer K-1's outputs (and the rotary tables) may sit on another
            # device than the embeddings where `keep` was computed: gather on each tensor's own.
            hidden = select.gather_rows(hidden, index.to(hidden.device))
            cos, sin = (select.gather_rows(t, index.to(t.device)) for t in (cos, sin))
            new_valid = filled & call.valid.gather(1, index)
            stats = self.last_prefill
            stats.kept = new_valid.sum(1).tolist()
            stats.keep_mask = keep.cpu()
        past_k = _past_length(call.cache, self.k)
        if call.cache is None or past_k == 0:
            after = new_valid
        else:
            prev = self._after_mask
            if prev is None or prev.shape != (new_valid.shape[0], past_k):
                # cache filled without the engine (or reordered): treat what is cached as real
                prev = torch.ones(new_valid.shape[0], past_k, dtype=torch.bool, device=new_valid.device)
            after = torch.cat([prev, new_valid], 1)
        self._after_mask = after if call.cache is not None else None
        mask = causal_mask(
            self.arch.text_config(self.model.config), hidden, after.to(hidden.device), call.cache, layer_idx=self.k
        )
        self._substitute = (mask, (cos, sin))
        kwargs = dict(kwargs, attention_mask=mask, position_embeddings=(cos, sin), position_ids=None)
        if args:
            return (hidden, *args[1:]), kwargs
        kwargs["hidden_states"] = hidden
        return args, kwargs

    def _on_later_layer(self, module, args, kwargs):
        if self._substitute is None or self._call is None:
            return None
        mask, rope = self._substitute
        return args, dict(kwargs, attention_mask=mask, position_embeddings=rope, position_ids=None)

    def _on_text_done(self, module, args, kwargs, output):
        # drop per-call tensors so nothing large outlives the forward
        self._substitute = None
        self._call = None
        self._scores = None
        return None

    def _choose(self, call: _Call) -> torch.Tensor:
        if self.method == "vtw":
            return select.keep_vtw(call.valid, call.vision)
        if self.method == "rand":
            return select.keep_rand(call.valid, call.vision, self.seed)
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
        keys = key[:, :, -length:].float()  # this call's keys only
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
    if impl == "eager" or impl not in ALL_ATTENTION_FUNCTIONS:
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


def _past_length(cache, layer_idx: int) -> int:
    if cache is None:
        return 0
    try:
        return int(cache.get_seq_length(layer_idx))
    except (IndexError, ValueError):
        return 0


def _validity(mask, batch: int, length: int, past: int, device) -> torch.Tensor:
    """Which of this call's tokens are real, from whatever mask the decoder was given."""
    if isinstance(mask, dict):
        mask = mask.get("full_attention", next(iter(mask.values()), None))
    if mask is None or not isinstance(mask, torch.Tensor):
        return torch.ones(batch, length, dtype=torch.bool, device=device)
    if mask.dim() == 2:
        return mask[:, -length:].to(device=device, dtype=torch.bool)
    # a prepared 4D mask (static cache): token j is real iff it may attend to itself
    rows = torch.arange(length, device=mask.device)
    diag = mask[:, 0, rows, past + rows]
    ok = diag if diag.dtype == torch.bool else diag == 0
    return ok.expand(batch, length).to(device)


def apply(model, k: int, method: str = "vtw", ratio: float = 0.5, seed: int = 0) -> EngineHandle:
    """Attach the engine to ``model`` and return its handle (call ``handle.remove()`` to detach).

    K is the number of decoder layers that see the vision tokens (1..N; N withdraws nothing).
    Every check runs before the model is touched.
    """
    arch = get_arch(model)
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
    if method == "fastv" and not 0.0 <= float(ratio) <= 1.0:
        raise UsageError(f"vtw: fastv ratio must be between 0 and 1 (share of vision tokens pruned), got {ratio}.")
    existing = getattr(model, _ATTR, None)
    if existing is not None and existing.active:
        raise AlreadyPatchedError(
            f"vtw: this model already has an engine attached (method {existing.method}, K = {existing.k}). "
            "Call handle.remove() (or leave its `with vtwcli.withdraw(...)` block) before attaching another."
        )
    text_cfg = arch.text_config(model.config)
    layer_types = getattr(text_cfg, "layer_types", None) or []
    if any(t != "full_attention" for t in layer_types[k:]):
        raise UnsupportedModelError(
            f"vtw: layers {k}..{n - 1} of this {arch.family} model include sliding-window or linear attention "
            f"({sorted(set(layer_types))}); the engine supports full-attention layers only. "
            "Disable the sliding window in the config (use_sliding_window=False) or choose another model."
        )
    layers = arch.decoder_layers(model)
    base, text = arch.base_model(model), arch.text_model(model)

    handle = EngineHandle(model=model, arch=arch, k=k, num_layers=n, method=method, ratio=float(ratio), seed=seed)
    hooks = handle._hooks
    try:
        hooks.append(base.register_forward_pre_hook(handle._on_base, with_kwargs=True))
        hooks.append(text.register_forward_pre_hook(handle._on_text, with_kwargs=True))
        hooks.append(text.register_forward_hook(handle._on_text_done, with_kwargs=True, always_call=True))
        if k < n:
            hooks.append(layers[k].register_forward_pre_hook(handle._on_layer_k, with_kwargs=True))
            for layer in layers[k + 1:]:
                hooks.append(layer.register_forward_pre_hook(handle._on_later_layer, with_kwargs=True))
            if method == "fastv":
                attn = layers[k - 1].self_attn
                hooks.append(attn.register_forward_pre_hook(handle._arm_probe, with_kwargs=True))
                hooks.append(attn.register_forward_hook(handle._disarm_probe, always_call=True))
    except Exception:
        handle.remove()
        raise
    setattr(model, _ATTR, handle)
    return handle


def attached(model) -> EngineHandle | None:
    """The engine attached to ``model``, if any."""
    handle = getattr(model, _ATTR, None)
    return handle if handle is not None and handle.active else None
