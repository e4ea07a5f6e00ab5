"""Engine-suite settings and the independent slow reference.

Settings (environment variables; scripts/gpu_check.sh sets them):
    VTW_TEST_DEVICE  cpu (default) | cuda
    VTW_TEST_DTYPE   float32 (default) | bfloat16 | float16
flash_attention_2 cases are always collected and skipped, with the reason, where they cannot run.

The reference never touches vtwcli.engine: it records what the text decoder receives in an
unmodified forward (embeddings and position ids), then runs the decoder layers one by one
with a hand-built additive causal mask and the model's rotary table, and physically deletes
the withdrawn rows (hidden states and rotary rows) before layer K. Batch size 1, no padding.
"""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

from vtwcli.archs import get_arch

ATTN_IMPLS = ("eager", "sdpa", "flash_attention_2")
# transformers' flash_attention_2 code path with pure-torch kernels (tests/engine/flash_standin.py)
FA2_STANDIN = "fa2_standin"
DEVICE = os.environ.get("VTW_TEST_DEVICE", "cpu")
DTYPE = getattr(torch, os.environ.get("VTW_TEST_DTYPE", "float32"))
# float32 on CPU agrees to ~1e-5 with a differently-ordered computation; bf16 needs room
ATOL = 2e-4 if DTYPE == torch.float32 else 8e-2
RTOL = 0.0 if DTYPE == torch.float32 else 2e-2
# withdrawal must move the logits by more than this, or a comparison with it proves nothing
MOVES = 0.25

# one thread: tiny matmuls gain nothing from more, and on a shared CPU OpenMP barriers
# make 2 threads up to 100x slower than 1
torch.set_num_threads(1)


def skip_reason(attn: str) -> str | None:
    if DEVICE.startswith("cuda") and not torch.cuda.is_available():
        return "VTW_TEST_DEVICE=cuda but torch sees no CUDA device"
    if attn == "flash_attention_2":
        if not DEVICE.startswith("cuda"):
            return "flash_attention_2 needs a CUDA GPU: run scripts/gpu_check.sh on a GPU machine"
        if importlib.util.find_spec("flash_attn") is None:
            return "flash_attention_2 needs the flash-attn package (pip install -e .[gpu])"
        if DTYPE == torch.float32:
            return "flash_attention_2 runs in half precision: set VTW_TEST_DTYPE=bfloat16"
    if DTYPE != torch.float32 and not DEVICE.startswith("cuda"):
        return "half-precision runs are for the GPU (scripts/gpu_check.sh)"
    return None


def attn_params(standin: bool = False):
    names = ATTN_IMPLS + ((FA2_STANDIN,) if standin else ())
    return [pytest.param(a, id=a) for a in names]


def make(arch: str, attn: str, num_layers: int = 4, seed: int = 0, monkeypatch=None):
    """A tiny model for (arch, attn), or a visible skip when this machine cannot run it.
    ``fa2_standin`` needs the test's ``monkeypatch`` (the kernels are swapped for one test)."""
    from tiny import build_tiny_model

    reason = skip_reason(attn)
    if reason:
        pytest.skip(reason)
    if attn == FA2_STANDIN:
        import flash_standin

        assert monkeypatch is not None, "fa2_standin needs monkeypatch"
        model = build_tiny_model(arch, attn="sdpa", dtype=DTYPE, num_layers=num_layers, seed=seed).to(DEVICE)
        flash_standin.install(monkeypatch)
        flash_standin.switch_to_flash(model)
        return model
    return build_tiny_model(arch, attn=attn, dtype=DTYPE, num_layers=num_layers, seed=seed).to(DEVICE)


def inputs(model, rows=(0,), seed: int = 0):
    from tiny import tiny_inputs

    return tiny_inputs(model, rows=rows, seed=seed, device=DEVICE)


def hook_count(model) -> int:
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules())


@torch.no_grad()
def capture_decoder_inputs(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs_embeds [1, L, H], position ids for the rotary table) the text decoder gets in
    an unmodified, cache-free forward."""
    text = get_arch(model).text_model(model)
    seen = {}

    def grab(module, args, kwargs):
        seen["embeds"] = kwargs["inputs_embeds"]
        seen["pos"] = kwargs.get("position_ids")

    h = text.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        model(**batch, use_cache=False)
    finally:
        h.remove()
    embeds, pos = seen["embeds"], seen["pos"]
    length = embeds.shape[1]
    if pos is None:
        pos = torch.arange(length, device=embeds.device)[None]
    if pos.dim() == 3:
        # M-RoPE: [3, B, L] (or [4, B, L] with the text row first)
        pos = pos[-3:]
    return embeds, pos


@torch.no_grad()
def reference_last_logits(model, batch: dict, k: int, drop: torch.Tensor | None) -> torch.Tensor:
    """Last-token logits [V] when the positions in ``drop`` ([L] bool) are deleted before
    layer k (0-based), keeping every token's original rotary position."""
    arch = get_arch(model)
    text = arch.text_model(model)
    assert batch["input_ids"].shape[0] == 1 and bool(batch["attention_mask"].all()), "reference: one unpadded row"
    embeds, pos = capture_decoder_inputs(model, batch)
    cos, sin = text.rotary_emb(embeds, pos)
    # the hand-built 4D mask suits sdpa and eager; a flash-configured model is run through sdpa
    text_cfg = arch.text_config(model.config)
    impl = text_cfg._attn_implementation
    if impl not in ("eager", "sdpa"):
        text_cfg._attn_implementation = "sdpa"
    try:
        return _reference_layers(model, arch, text, embeds, cos, sin, k, drop)
    finally:
        text_cfg._attn_implementation = impl


def _reference_layers(model, arch, text, embeds, cos, sin, k, drop):
    hidden = embeds

    def causal(n):
        m = torch.full((n, n), torch.finfo(hidden.dtype).min, dtype=hidden.dtype, device=hidden.device)
        return m.triu(1)[None, None]

    mask = causal(hidden.shape[1])
    for i, layer in enumerate(arch.decoder_layers(model)):
        if i == k and drop is not None:
            rows = (~drop).nonzero(as_tuple=True)[0]
            hidden = hidden[:, rows]
            cos, sin = cos[..., rows, :], sin[..., rows, :]
            mask = causal(hidden.shape[1])
        out = layer(hidden, attention_mask=mask, position_embeddings=(cos, sin), position_ids=None, use_cache=False)
        hidden = out[0] if isinstance(out, tuple) else out
    return arch.lm_head(model)(text.norm(hidden[:, -1]))[0]


def extend(batch: dict, token: int) -> dict:
    """The same prompt with one more (text) token appended, as a cache-free decoder sees it."""
    out = dict(batch)
    ids = batch["input_ids"]
    new = torch.tensor([[token]], device=ids.device)
    out["input_ids"] = torch.cat([ids, new], 1)
    out["attention_mask"] = torch.cat([batch["attention_mask"], torch.ones_like(new)], 1)
    if "mm_token_type_ids" in batch:
        out["mm_token_type_ids"] = torch.cat([batch["mm_token_type_ids"], torch.zeros_like(new)], 1)
    return out


def vision_of(model, batch) -> torch.Tensor:
    from tiny import vision_mask

    return vision_mask(model, batch)
