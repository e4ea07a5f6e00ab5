"""Where the output tokens' attention goes: the paper's Figures 4 and 5, reduced on the fly.

For every forward of a greedy ``generate()`` (the prefill produces output token 0, decode
step t output token t), every decoder layer's attention is observed at the one row that
predicts the next token: the last query. Its probabilities are computed from the layer's
own query and key states, ``softmax(q_last K^T * scale + mask_row)`` per head, in float32,
inside a thin wrapper around whatever attention implementation the model runs (eager,
sdpa, flash-attention): the kernel itself is untouched and no layer's full map ever
exists. The row is summed per token type and averaged over heads at once, so what is kept
is 4 numbers per layer and output token.

Token types come from the placeholder ids of the model's architecture record:

- ``system``: prompt tokens before the first vision token,
- ``vision``: the image/video placeholder tokens,
- ``instruction``: the other prompt tokens after the first vision token (text between two
  images included),
- ``output``: tokens generated so far (the token being fed in included).

The scores are the ones the layer's kernel computes: its own scaling, its logit soft-capping
when it has one (Gemma 2), and the mask the model built for it (causal, sliding window,
bidirectional blocks). A layer with no attention at all (linear attention, short
convolution: the config's ``layer_types``) has no share to give: its row is NaN in
:meth:`SampleShares.matrix`, ``None`` in what ``vtw inspect`` reports. A kernel the probe
cannot reproduce (attention sinks) is refused rather than reported wrong.

With the withdrawal engine attached, layers >= K hold only the kept tokens; their key slots
are typed from the engine's keep mask, so the shares show what the text tokens attend to
after withdrawal (the vision share there is 0 for VTW). With ``fastv-mask`` they hold every
token and the pruned ones are masked out, so the prompt's own types apply; the mask gives the
pruned keys no attention.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import torch

from vtwcli.engine.masks import RECURRENT, layer_kind
from vtwcli.errors import NoVisionTokensError, UnsupportedModelError, UsageError

TYPES = ("system", "vision", "instruction", "output")
SYSTEM, VISION, INSTRUCTION, OUTPUT = range(4)


def token_types(input_ids: torch.Tensor, placeholder_ids) -> torch.Tensor:
    """Type index (0 system, 1 vision, 2 instruction) of each prompt position of a 1-D ``input_ids``."""
    vision = torch.isin(input_ids, torch.tensor(list(placeholder_ids), device=input_ids.device))
    if not bool(vision.any()):
        raise NoVisionTokensError(
            f"the prompt holds no image or video placeholder token (ids {list(placeholder_ids)}), so there "
            "is no vision attention to measure; give the sample an image or video"
        )
    first = int(vision.nonzero()[0, 0])
    types = torch.full_like(input_ids, INSTRUCTION)
    types[:first] = SYSTEM
    types[vision] = VISION
    return types


@dataclass
class SampleShares:
    """One sample: ``shares[t][j]`` is the [4] share vector of output token t at layer j."""

    prompt_length: int
    counts: list[int]  # prompt tokens per type (system, vision, instruction)
    generated: list[int] = field(default_factory=list)
    shares: list[list[torch.Tensor | None]] = field(default_factory=list)

    def matrix(self) -> torch.Tensor:
        """[T, N, 4] float64 (T output tokens, N layers; NaN rows: layers without attention)."""
        return torch.stack([torch.stack(list(row)) for row in self.shares]).double()


class AttentionProbe:
    """Records, per forward and decoder layer, the head-averaged type shares of the last query row.

    Use as a context manager around one sample's ``generate()`` (batch size 1)::

        probe = AttentionProbe(model, arch)
        with probe.sample(input_ids[0]) as rec:
            model.generate(**inputs, max_new_tokens=8)
        rec.matrix()   # [T, N, 4]
    """

    def __init__(self, model, arch):
        self.model = model
        self.arch = arch
        self.layers = arch.decoder_layers(model)
        self.num_layers = len(self.layers)
        # layers whose mixer is no attention (linear attention, convolution) never call the interface
        self.attends = [layer_kind(t) != RECURRENT for t in arch.layer_types(model.config)]
        # every submodule of layer j -> j: the attention module is whichever one calls the interface
        self._owner = {id(m): j for j, layer in enumerate(self.layers) for m in layer.modules()}
        self._rec: SampleShares | None = None
        self._prompt_types: torch.Tensor | None = None
        self._kept_types: torch.Tensor | None = None
        self._step = -1
        self._hooks: list = []
        self._saved: tuple | None = None

    # ------------------------------------------------------------------ lifecycle
    def sample(self, prompt_ids: torch.Tensor) -> _SampleContext:
        if prompt_ids.dim() != 1:
            raise UsageError("AttentionProbe records one sample at a time: give a 1-D input_ids row")
        types = token_types(prompt_ids, self.arch.placeholder_ids(self.model.config))
        counts = [int((types == t).sum()) for t in (SYSTEM, VISION, INSTRUCTION)]
        return _SampleContext(self, types.cpu(), SampleShares(prompt_length=int(types.numel()), counts=counts))

    def _start(self, types: torch.Tensor, rec: SampleShares) -> None:
        self._prompt_types, self._rec, self._kept_types, self._step = types, rec, None, -1
        text = self.arch.text_model(self.model)
        self._hooks.append(text.register_forward_pre_hook(self._on_text, with_kwargs=True))
        self._install()

    def _stop(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
        self._uninstall()
        self._prompt_types = self._kept_types = None
        self._rec = None

    def _on_text(self, module, args, kwargs):
        self._step += 1
        nan = torch.full((len(TYPES),), float("nan"))
        self._rec.shares.append([None if a else nan for a in self.attends])
        return None

    # ------------------------------------------------------------------ the wrapper
    def _install(self) -> None:
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        impl = self.arch.text_config(self.model.config)._attn_implementation or "eager"
        mapping = ALL_ATTENTION_FUNCTIONS._local_mapping
        self._saved = (impl, impl in mapping, mapping.get(impl))
        registered = None if impl == "eager" or impl not in ALL_ATTENTION_FUNCTIONS else ALL_ATTENTION_FUNCTIONS[impl]

        def wrapper(module, query, key, value, attention_mask, *args, **kwargs):
            j = self._owner.get(id(module))
            if j is not None and self._rec is not None:
                scaling = kwargs.get("scaling")
                if scaling is None:
                    scaling = getattr(module, "scaling", query.shape[-1] ** -0.5)
                if kwargs.get("s_aux") is not None or getattr(module, "sinks", None) is not None:
                    raise UnsupportedModelError(
                        "vtw inspect: this model's attention has sinks (extra per-head logits), which the "
                        "attention probe does not reproduce; its shares would be wrong, so it is refused"
                    )
                self._record(j, query, key, attention_mask, scaling, kwargs.get("softcap"))
            # "eager" is no registry key: each modeling file passes its own function as default
            real = registered or sys.modules[type(module).__module__].eager_attention_forward
            return real(module, query, key, value, attention_mask, *args, **kwargs)

        ALL_ATTENTION_FUNCTIONS[impl] = wrapper

    def _uninstall(self) -> None:
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        if self._saved is None:
            return
        impl, had, previous = self._saved
        if had:
            ALL_ATTENTION_FUNCTIONS._local_mapping[impl] = previous
        else:
            ALL_ATTENTION_FUNCTIONS._local_mapping.pop(impl, None)
        self._saved = None

    # ------------------------------------------------------------------ the reduction
    def _key_types(self, j: int, n_keys: int, device) -> torch.Tensor:
        prefix = self._prompt_types
        engine = _engine(self.model)
        # fastv-mask keeps every slot (the pruned ones masked out): the full prompt's types apply
        if engine is not None and j >= engine.k and engine.withdraws and not engine.masks_only:
            if self._kept_types is None:
                stats = engine.last_prefill
                keep = None if stats is None else stats.keep_mask
                if keep is None:
                    raise RuntimeError("inspect: the engine withdrew tokens but recorded no keep mask")
                self._kept_types = self._prompt_types[keep[0].bool()]
            prefix = self._kept_types
        seen = prefix.numel() + max(self._step, 0)  # prompt + output tokens fed so far (this one included)
        if n_keys < seen and self._step > 0:
            # a sliding-window cache keeps only the most recent keys: the slots are the last n_keys positions
            types = torch.cat([prefix, torch.full((self._step,), OUTPUT, dtype=prefix.dtype)])
            return types[-n_keys:].to(device)
        n_out = n_keys - prefix.numel()
        if n_out < 0:
            raise RuntimeError(
                f"inspect: layer {j} holds {n_keys} keys but the prompt has {prefix.numel()} (batch size must be 1)"
            )
        out = torch.full((n_out,), OUTPUT, dtype=prefix.dtype)
        return torch.cat([prefix, out]).to(device)

    @torch.no_grad()
    def _record(self, j: int, query, key, attention_mask, scaling, softcap=None) -> None:
        if query.shape[0] != 1:
            raise UsageError("inspect records one sample per forward (batch size 1)")
        q = query[0, :, -1].float()  # [H, D]: the row that predicts the next token
        k = key[0].float()  # [Hkv, Lk, D]
        n_keys = k.shape[1]
        k = k.repeat_interleave(q.shape[0] // k.shape[0], dim=0)
        logits = torch.einsum("hd,hkd->hk", q, k) * float(scaling)
        if softcap is not None:  # Gemma 2: tanh soft-capping before the mask, as its eager kernel does
            logits = torch.tanh(logits / float(softcap)) * float(softcap)
        row = _mask_row(attention_mask, n_keys)
        if row is not None:
            row = row.to(logits.device)
            if row.dtype == torch.bool:
                logits = logits.masked_fill(~row, float("-inf"))
            else:
                logits = logits + row.float()
        probs = logits.softmax(-1)  # [H, Lk]
        types = self._key_types(j, n_keys, probs.device)
        shares = torch.zeros(probs.shape[0], len(TYPES), device=probs.device)
        shares.index_add_(1, types, probs)
        self._rec.shares[self._step][j] = shares.mean(0).cpu()


class _SampleContext:
    def __init__(self, probe: AttentionProbe, types: torch.Tensor, rec: SampleShares):
        self.probe, self.types, self.rec = probe, types, rec

    def __enter__(self) -> SampleShares:
        self.probe._start(self.types, self.rec)
        return self.rec

    def __exit__(self, exc_type, *exc) -> None:
        self.probe._stop()
        if exc_type is not None:
            # a forward whose layers never reached the attention (interrupted) leaves holes: drop it
            self.rec.shares = [row for row in self.rec.shares if all(s is not None for s in row)]
            return
        for t, row in enumerate(self.rec.shares):
            missing = [j for j, s in enumerate(row) if s is None]
            if missing:  # an attention call went past the probe: its figures would be wrong, not partial
                raise RuntimeError(
                    f"inspect: output token {t}: the attention of layer(s) {', '.join(map(str, missing))} was not "
                    "recorded (another wrapper bypassed the probe; internal error)"
                )


def _mask_row(mask, n_keys: int) -> torch.Tensor | None:
    """The last query's mask over the keys: bool (True = may attend) or additive float; None = all."""
    if mask is None or not isinstance(mask, torch.Tensor):
        return None
    if mask.dim() == 4:
        row = mask[0, 0, -1]
        row = row[:n_keys]  # a longer mask (static cache) is cut the way the kernels cut it
    elif mask.dim() == 2:  # flash-attention's padding mask [B, Lk]: its rightmost columns
        row = mask[0, -n_keys:].bool()
    else:
        raise RuntimeError(f"inspect: unexpected {mask.dim()}-D attention mask")
    if row.shape[0] != n_keys:
        raise RuntimeError(f"inspect: the attention mask covers {row.shape[0]} keys, the layer holds {n_keys}")
    return row


def _engine(model) -> Any:
    from vtwcli.engine import attached

    return attached(model)
