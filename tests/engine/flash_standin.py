"""Pure-torch stand-ins for the two flash-attn kernels, so transformers' flash_attention_2 code
path (2D padding masks, unpadding, varlen, bottom-right causal alignment) runs on a CPU.

Only the kernels are replaced; everything transformers does around them (mask creation with
the flash mask function, `_upad_input`, pad/unpad) is its real code. The real kernels run in
scripts/gpu_check.sh.
"""

from __future__ import annotations

import torch


def _attend(q, k, v, scale, causal):
    """q [Lq, H, D], k/v [Lk, Hkv, D] -> [Lq, H, D]; causal is bottom-right aligned as in
    flash-attn >= 2.1 (query i sees keys up to i + Lk - Lq)."""
    groups = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(groups, dim=1)
    v = v.repeat_interleave(groups, dim=1)
    scale = scale if scale is not None else q.shape[-1] ** -0.5
    scores = torch.einsum("qhd,khd->hqk", q.float(), k.float()) * scale
    if causal:
        lq, lk = q.shape[0], k.shape[0]
        allowed = torch.arange(lk)[None, :] <= torch.arange(lq)[:, None] + (lk - lq)
        scores = scores.masked_fill(~allowed.to(scores.device), float("-inf"))
    out = torch.einsum("hqk,khd->qhd", scores.softmax(-1), v.float())
    return out.to(q.dtype)


def flash_attn_func(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1),
                    softcap=0.0, deterministic=False):
    return torch.stack([_attend(q[b], k[b], v[b], softmax_scale, causal) for b in range(q.shape[0])])


def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,
                           softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                           deterministic=False):
    out = torch.empty_like(q)
    for i in range(len(cu_seqlens_q) - 1):
        qs, qe = int(cu_seqlens_q[i]), int(cu_seqlens_q[i + 1])
        ks, ke = int(cu_seqlens_k[i]), int(cu_seqlens_k[i + 1])
        out[qs:qe] = _attend(q[qs:qe], k[ks:ke], v[ks:ke], softmax_scale, causal)
    return out


def install(monkeypatch) -> None:
    """Route transformers' flash_attention_2 kernels to the stand-ins for one test."""
    from transformers import modeling_flash_attention_utils as fa

    def lazy_imports(implementation, attention_wrapper=None, allow_all_kernels=False):
        return flash_attn_func, flash_attn_varlen_func, None, fa._pad_input, fa._unpad_input

    monkeypatch.setattr(fa, "_lazy_imports", lazy_imports)
    monkeypatch.setattr(fa, "_loaded_implementation", None)


def switch_to_flash(model) -> None:
    """Make the text decoder of ``model`` dispatch to flash_attention_2 (the loader refuses it
    without CUDA, so the switch is made on a built model; the vision tower keeps its own)."""
    from vtwcli.archs import get_arch

    get_arch(model).text_config(model.config)._attn_implementation = "flash_attention_2"
