"""Data-parallel runs on the engines users already have (torchrun, accelerate launch).

vtw has no scheduler of its own. When a command starts under ``torchrun`` or
``accelerate launch`` (both set ``WORLD_SIZE``/``RANK``), each rank takes a disjoint,
strided share of the samples, works on its own device, and rank 0 gathers every rank's
results, writes the files and shows the progress bar. A rank that fails (a bad sample, out
of memory) does not leave the others hanging in a collective: every rank always reaches
the gather, carrying either its results or its error, and rank 0 raises one clear error
naming the rank.
"""

from __future__ import annotations

import atexit
import os
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from vtwcli.errors import VTWError

T = TypeVar("T")


class RankFailedError(VTWError):
    """One or more ranks of a data-parallel run failed; raised on every rank after the gather."""


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's share: items rank, rank+W, rank+2W... (disjoint, covers everything once)."""
        return list(items[self.rank :: self.world_size])

    def shard_indices(self, n: int) -> list[int]:
        return list(range(self.rank, n, self.world_size))

    def device(self, requested: str = "auto") -> str:
        """The device this rank should use: its own GPU under a launcher, else what was asked."""
        if requested not in ("auto", "cuda"):
            return requested
        import torch

        if torch.cuda.is_available():
            return f"cuda:{self.local_rank}" if self.enabled else "cuda"
        return "cpu" if requested == "auto" else requested


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


_CONTEXT: DistContext | None = None


def context(timeout_s: float | None = None) -> DistContext:
    """Join the launcher's process group (once) and describe this process's place in it.

    Without a launcher (WORLD_SIZE unset or 1) nothing is initialised and rank 0 of 1 is
    returned. The backend is nccl when every rank has a GPU, else gloo (CPU runs, tests).
    """
    global _CONTEXT
    if _CONTEXT is not None:
        return _CONTEXT
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        _CONTEXT = DistContext()
        return _CONTEXT
    import torch
    import torch.distributed as dist

    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", rank)
    backend = "nccl" if torch.cuda.is_available() and torch.cuda.device_count() > local_rank else "gloo"
    if not dist.is_initialized():
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        timeout = timedelta(seconds=timeout_s or float(os.environ.get("VTW_DIST_TIMEOUT", 1800)))
        dist.init_process_group(backend=backend, timeout=timeout)
        # Leaving a process group undestroyed at exit aborts the process on recent torch.
        atexit.register(_shutdown)
    _CONTEXT = DistContext(rank=rank, world_size=world, local_rank=local_rank, backend=backend)
    return _CONTEXT


def _shutdown() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def gather(ctx: DistContext, payload: Any) -> list[Any] | None:
    """Collect one picklable object per rank on rank 0 (list ordered by rank); None elsewhere."""
    if not ctx.enabled:
        return [payload]
    import torch.distributed as dist

    out: list[Any] | None = [None] * ctx.world_size if ctx.is_main else None
    dist.gather_object(payload, out, dst=0)
    return out


def broadcast(ctx: DistContext, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not ctx.enabled:
        return obj
    import torch.distributed as dist

    box = [obj if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def run_sharded(ctx: DistContext, work: Callable[[], T]) -> list[T] | None:
    """Run ``work`` on every rank and gather the results on rank 0, failures included.

    Returns the per-rank results on rank 0 (None on other ranks). If any rank raised, every
    rank raises RankFailedError naming the failed ranks and their errors, so none hangs and
    the launcher sees a non-zero exit everywhere.
    """
    try:
        payload: dict[str, Any] = {"ok": True, "value": work()}
    except Exception as err:  # noqa: BLE001 - forwarded to rank 0 and re-raised below
        payload = {
            "ok": False,
            "error": f"{type(err).__name__}: {err}",
            "trace": traceback.format_exc(),
            "user_error": isinstance(err, VTWError),
        }
        if not ctx.enabled:
            raise
    gathered = gather(ctx, payload)
    failures = broadcast(
        ctx,
        [(r, p["error"]) for r, p in enumerate(gathered) if not p["ok"]] if gathered is not None else None,
    )
    if failures:
        messages = {msg for _, msg in failures}
        if len(failures) == ctx.world_size and len(messages) == 1:
            # the same mistake everywhere (a bad option, a missing file): say it once
            raise RankFailedError(f"all {ctx.world_size} ranks failed: {messages.pop()}; nothing was written")
        detail = "; ".join(f"rank {r}: {msg}" for r, msg in failures)
        raise RankFailedError(f"{len(failures)} of {ctx.world_size} ranks failed ({detail}); nothing was written")
    if gathered is None:
        return None
    return [p["value"] for p in gathered]


def merge_shards(shares: Sequence[Sequence[tuple[int, T]]]) -> list[T]:
    """Per-rank lists of (global index, item) back in global order, each index exactly once."""
    pairs = sorted(((i, item) for share in shares for i, item in share), key=lambda pair: pair[0])
    seen = [i for i, _ in pairs]
    if len(set(seen)) != len(seen):
        raise RuntimeError(f"a sample was processed by two ranks (indices {seen}); the shards overlap")
    return [item for _, item in pairs]


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        import torch.distributed as dist

        dist.barrier()


def reported_by_rank_zero(err: BaseException) -> bool:
    """True on ranks other than 0 for a failed data-parallel run: rank 0 reports it, once.

    Every rank raises :class:`RankFailedError` (so every rank exits non-zero and the launcher
    stops); the CLI lets the other ranks leave with the same exit code and print nothing.
    """
    return isinstance(err, RankFailedError) and _CONTEXT is not None and not _CONTEXT.is_main
