"""Will the model fit? An estimate before loading, instead of the out-of-memory killer after.

:func:`check_fits` is called by :func:`vtwcli.models.load_model` before any weight is built or
read: the model's parameters and buffers are counted on PyTorch's meta device (no memory, no
download) and multiplied by the dtype's bytes, the KV cache of a run of ``context_tokens``
tokens is added, and the sum is compared with the free memory of the target device (CUDA:
``torch.cuda.mem_get_info``; CPU: ``MemAvailable`` and the cgroup's limit). A model that does
not fit is refused with one line that says what to do; ``force=True`` (``--force``) skips the
check, and so does :func:`no_memory_check` around a call.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vtwcli.errors import UsageError

# Tokens of KV cache the estimate reserves for a run: a LLaVA-NeXT prompt (~2,900 tokens at
# most with anyres) is the largest of the supported single-image prompts; generated tokens fit.
DEFAULT_CONTEXT_TOKENS = 3072
# What loading needs beyond the weights and the cache (activations of one layer, the
# processor, the allocator's slack): a share of the weights, at least 256 MiB.
OVERHEAD_SHARE = 0.05
OVERHEAD_MIN = 256 * 2**20

_skip: contextvars.ContextVar[bool] = contextvars.ContextVar("vtw_skip_memory_check", default=False)


class NotEnoughMemoryError(UsageError):
    """The model (weights + KV cache) would not fit the free memory of the target device."""


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int  # bytes of parameters and buffers in the load dtype
    kv_cache: int  # bytes of the KV cache for ``tokens`` tokens
    overhead: int
    tokens: int
    dtype: str

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.overhead


@contextlib.contextmanager
def no_memory_check():
    """Skip :func:`check_fits` for every load inside the block (what ``--force`` does)."""
    token = _skip.set(True)
    try:
        yield
    finally:
        _skip.reset(token)


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def estimate(config: Any, dtype: str, context_tokens: int = DEFAULT_CONTEXT_TOKENS) -> MemoryEstimate:
    """Weights (from ``config`` built on the meta device) and KV cache, in ``dtype``."""
    import torch
    from transformers import AutoModelForImageTextToText

    from vtwcli.models.loading import torch_dtype

    td = torch_dtype(dtype)
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config, dtype=td)
    # parameters in the load dtype; buffers (rotary tables and such) keep their own
    weights = sum(p.numel() for p in model.parameters()) * td.itemsize
    weights += sum(b.numel() * b.element_size() for b in model.buffers())
    text = config.get_text_config(decoder=True)
    heads = int(text.num_attention_heads)
    head_dim = int(getattr(text, "head_dim", None) or text.hidden_size // heads)
    kv_heads = int(getattr(text, "num_key_value_heads", None) or heads)
    kv = 2 * int(text.num_hidden_layers) * kv_heads * head_dim * td.itemsize * int(context_tokens)
    overhead = max(OVERHEAD_MIN, int(weights * OVERHEAD_SHARE))
    return MemoryEstimate(weights=weights, kv_cache=kv, overhead=overhead, tokens=int(context_tokens), dtype=dtype)


def free_bytes(device: str) -> int | None:
    """Free memory of ``device`` (``cpu``, ``cuda`` or ``cuda:N``) in bytes; None if unknown."""
    if str(device).startswith("cuda"):
        import torch

        index = int(device.split(":", 1)[1]) if ":" in device else torch.cuda.current_device()
        return int(torch.cuda.mem_get_info(index)[0])
    found = [n for n in (_meminfo_available(), _cgroup_free()) if n is not None]
    return min(found) if found else None


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_free() -> int | None:
    """The cgroup v2 (or v1) memory limit minus what the group uses; None without a limit."""
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or not limit.isdigit() or int(limit) >= 2**60:
            return None
        return max(0, int(limit) - usage)
    return None


def check_fits(
    config: Any,
    *,
    name: str,
    dtype: str,
    device: str,
    context_tokens: int = DEFAULT_CONTEXT_TOKENS,
    force: bool = False,
    random_init: bool = False,
) -> MemoryEstimate | None:
    """Refuse (NotEnoughMemoryError, one line) a model that would not fit ``device``'s free memory.

    Returns the estimate, or None when the check was skipped (``force``, :func:`no_memory_check`)
    or the free memory cannot be read.
    """
    if force or _skip.get():
        return None
    free = free_bytes(device)
    if free is None:
        return None
    est = estimate(config, dtype, context_tokens)
    if est.total <= free:
        return est
    what = "cuda" if str(device).startswith("cuda") else "cpu"
    hints = []
    if dtype == "fp32":
        hints.append("--dtype bf16 (half the memory)")
    if not random_init:
        hints.append("--device-map auto (spread it over the GPUs and CPU memory)")
    hints.append("a smaller model (see `vtw models`)")
    if random_init:
        hints.append("--shrink (the same token geometry with a small decoder)")
    raise NotEnoughMemoryError(
        f"{name} needs about {_gib(est.total)} on {what} ({dtype} weights {_gib(est.weights)} + KV cache "
        f"{_gib(est.kv_cache)} for {est.tokens} tokens + {_gib(est.overhead)} working memory) but "
        f"{_gib(free)} is free; use {', '.join(hints)}, or --force to try anyway"
    )
