"""Throughput under a memory budget: peak meters, the max-batch search, rates.

The search asks "does a batch of B fit the budget?" with a ``try_batch(B)`` callable (one
``generate()`` call on B rows in the runner, a fake in tests) and a :class:`PeakMeter`:

- on CUDA (:class:`CudaPeakMeter`) the caching allocator is capped at the budget
  (``torch.cuda.set_per_process_memory_fraction``), so a batch that does not fit raises
  ``torch.OutOfMemoryError`` like it would on a card of that size; the peak is the
  allocator's reserved bytes (what it took from the device; the CUDA context is not counted);
- on CPU (:class:`RssPeakMeter`) the budget is the process's resident memory: the kernel's
  high-water mark (``VmHWM``, reset through ``/proc/self/clear_refs``) or, where that cannot be
  reset, a thread polling the resident size. glibc keeps freed blocks of up to 32 MiB in its
  heap once it has seen blocks that large, so the resident size would follow the allocator's
  history instead of what torch holds (1.5x the live tensors in our runs); the meter fixes
  malloc's mmap threshold at 128 KiB (``mallopt``) so a freed tensor leaves the resident set,
  and hands free heap back (``malloc_trim``) between tries.

A try that runs out of memory (or, on CPU, peaks above the budget) is recorded with its
reason, the memory is released, and the search goes on with a smaller size: one failure
never ends the run. The search grows by doubling from a starting size (the analytic
prediction when there is one), then bisects between the largest size that fit and the
smallest that did not.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

# ---------------------------------------------------------------- out of memory


def is_out_of_memory(err: BaseException) -> bool:
    """True for torch's CUDA out-of-memory error and for the CPU allocator's failure (a plain
    RuntimeError from ``DefaultCPUAllocator``), and for Python's MemoryError."""
    import torch

    if isinstance(err, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and (
        "can't allocate memory" in text or "out of memory" in text.lower() or "not enough memory" in text
    )


def short_reason(err: BaseException, limit: int = 160) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------- meters


class PeakMeter(Protocol):
    """What the search needs from a device: a budget it can enforce or judge against."""

    budget: int

    def current(self) -> int: ...  # bytes held now
    def begin(self) -> None: ...  # reset the peak before a try
    def end(self) -> int: ...  # the peak since begin()
    def release(self) -> None: ...  # give freed memory back (after every try, failed or not)
    def close(self) -> None: ...  # undo what the meter set up


def _read_status(field_name: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss_bytes() -> int:
    """The process's resident memory now."""
    value = _read_status("VmRSS")
    if value is not None:
        return value
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:  # noqa: BLE001 - neither /proc nor psutil: resource's peak is all there is
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def _malloc_trim() -> None:
    libc = _libc()
    if libc is not None:
        with contextlib.suppress(AttributeError):
            libc.malloc_trim(0)


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def fix_mmap_threshold(nbytes: int = 128 * 1024) -> bool:
    """Make glibc serve every block of ``nbytes`` or more with its own mapping, returned to the
    system when freed (disables the dynamic threshold). False where that is not glibc."""
    libc = _libc()
    if libc is None:
        return False
    try:
        return bool(libc.mallopt(M_MMAP_THRESHOLD, int(nbytes)))
    except AttributeError:
        return False


class RssPeakMeter:
    """Peak resident memory of this process (CPU runs)."""

    def __init__(self, budget: int, poll_s: float = 0.005, fixed_threshold: bool = True):
        self.budget = int(budget)
        self.poll_s = poll_s
        self.method = "VmHWM" if self._reset_hwm() else "polling"
        self.mmap_threshold_fixed = fix_mmap_threshold() if fixed_threshold else False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._peak = 0

    @staticmethod
    def _reset_hwm() -> bool:
        if _read_status("VmHWM") is None:
            return False
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
                fh.write("5")  # resets VmHWM to the current resident size (Linux >= 4.0)
        except OSError:
            return False
        return True

    def current(self) -> int:
        return rss_bytes()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, rss_bytes())
            self._stop.wait(self.poll_s)

    def begin(self) -> None:
        self.release()
        if self.method == "VmHWM" and self._reset_hwm():
            return
        self.method = "polling"
        self._peak = rss_bytes()
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def end(self) -> int:
        if self.method == "VmHWM":
            return max(_read_status("VmHWM") or 0, rss_bytes())
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        return max(self._peak, rss_bytes())

    def release(self) -> None:
        gc.collect()
        _malloc_trim()

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None


class CudaPeakMeter:
    """The caching allocator capped at the budget; peak = reserved bytes (GPU runs)."""

    def __init__(self, budget: int, device: Any):
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.budget = int(budget)
        total = torch.cuda.get_device_properties(self.device).total_memory
        self.total = int(total)
        self.capped = self.budget < total
        if self.capped:
            torch.cuda.set_per_process_memory_fraction(self.budget / total, self.device)

    def current(self) -> int:
        return int(self.torch.cuda.memory_reserved(self.device))

    def begin(self) -> None:
        self.release()
        self.torch.cuda.reset_peak_memory_stats(self.device)

    def end(self) -> int:
        self.torch.cuda.synchronize(self.device)
        return int(self.torch.cuda.max_memory_reserved(self.device))

    def release(self) -> None:
        gc.collect()
        self.torch.cuda.empty_cache()

    def close(self) -> None:
        if self.capped:
            self.torch.cuda.set_per_process_memory_fraction(1.0, self.device)
        self.release()


def peak_meter(budget: int, device: Any) -> PeakMeter:
    """The meter for ``device``: CUDA memory on a GPU, resident memory otherwise."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        return CudaPeakMeter(budget, dev)
    return RssPeakMeter(budget)


# ---------------------------------------------------------------- the search


@dataclass
class BatchRun:
    """What one generate() call on a batch produced (the runner fills it; fakes too)."""

    batch: int
    seconds: float
    new_tokens: int  # generated tokens over all rows (padding after an early stop excluded)

    @property
    def samples_per_s(self) -> float:
        return self.batch / self.seconds if self.seconds > 0 else float("nan")

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else float("nan")


@dataclass
class Try:
    """One size tried during the search."""

    batch: int
    fits: bool
    peak_bytes: int | None = None
    reason: str | None = None  # why it did not fit: "out of memory: ...", "over budget: ..."
    seconds: float | None = None
    tokens_per_s: float | None = None


@dataclass
class SearchResult:
    max_batch: int  # 0 when not even one row fits
    capped: bool  # the largest size allowed (the prompts available) fit: the real maximum may be higher
    cap: int
    tries: list[Try] = field(default_factory=list)
    best: BatchRun | None = None  # the run at max_batch during the search

    @property
    def failures(self) -> list[Try]:
        return [t for t in self.tries if not t.fits]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["best"] = None if self.best is None else {
            "batch": self.best.batch, "seconds": self.best.seconds, "new_tokens": self.best.new_tokens,
            "tokens_per_s": self.best.tokens_per_s, "samples_per_s": self.best.samples_per_s,
        }  # fmt: skip
        return out


def try_once(try_batch: Callable[[int], BatchRun], batch: int, meter: PeakMeter) -> tuple[Try, BatchRun | None]:
    """Run one size under ``meter``; an out-of-memory error becomes a failed :class:`Try`.

    Errors that are not out of memory propagate (a bug must not look like a full device).
    """
    meter.begin()
    run: BatchRun | None = None
    failure: BaseException | None = None
    try:
        run = try_batch(batch)
    except Exception as err:  # noqa: BLE001 - filtered just below
        if not is_out_of_memory(err):
            meter.release()
            raise
        failure = err
    if failure is not None:
        reason = f"out of memory: {short_reason(failure)}"
        failure = None  # its traceback holds the failed try's frames (and their tensors)
        peak = None
        with contextlib.suppress(Exception):
            peak = meter.end()
        meter.release()
        return Try(batch=batch, fits=False, peak_bytes=peak, reason=reason), None
    peak = meter.end()
    meter.release()
    if peak > meter.budget:
        from vtwcli.bench.budget import format_bytes

        return Try(batch=batch, fits=False, peak_bytes=peak, seconds=run.seconds, tokens_per_s=run.tokens_per_s,
                   reason=f"over budget: peak {format_bytes(peak)} > {format_bytes(meter.budget)}"), None  # fmt: skip
    return Try(batch=batch, fits=True, peak_bytes=peak, seconds=run.seconds, tokens_per_s=run.tokens_per_s), run


def search_max_batch(
    try_batch: Callable[[int], BatchRun],
    meter: PeakMeter,
    *,
    cap: int,
    start: int = 1,
    max_tries: int = 16,
    on_try: Callable[[Try], None] | None = None,
) -> SearchResult:
    """The largest batch in 1..``cap`` whose run fits ``meter``'s budget.

    Starts at ``start`` (clamped to 1..cap); doubles while it fits, halves while it does not,
    then bisects the gap. Assumes that a size that fits means every smaller one fits (the
    memory of a batch grows with its size). At most ``max_tries`` sizes are tried; if that
    runs out first the largest size that fit is the answer and the tries say so.
    """
    if cap < 1:
        raise ValueError("cap must be at least 1")
    size = min(max(1, int(start)), cap)
    good, bad = 0, cap + 1  # largest known to fit, smallest known not to
    best: BatchRun | None = None
    tries: list[Try] = []

    def attempt(b: int) -> bool:
        nonlocal good, bad, best
        t, run = try_once(try_batch, b, meter)
        tries.append(t)
        if on_try is not None:
            on_try(t)
        if t.fits:
            if b > good:
                good, best = b, run
        else:
            bad = min(bad, b)
        return t.fits

    # grow or shrink geometrically until the boundary is bracketed
    if attempt(size):
        while good < cap and len(tries) < max_tries:
            nxt = min(cap, good * 2)
            if not attempt(nxt):
                break
    else:
        while bad > 1 and len(tries) < max_tries:
            nxt = max(1, bad // 2)
            if attempt(nxt):
                break
    # bisect between the largest that fit and the smallest that did not
    while bad - good > 1 and len(tries) < max_tries:
        attempt((good + bad) // 2)
    return SearchResult(max_batch=good, capped=good == cap, cap=cap, tries=tries, best=best)


def timed(fn: Callable[[], int], batch: int, sync: Callable[[], None] | None = None) -> BatchRun:
    """Run ``fn`` (which returns the generated token count) and time it."""
    if sync:
        sync()
    t0 = time.perf_counter()
    tokens = fn()
    if sync:
        sync()
    return BatchRun(batch=batch, seconds=time.perf_counter() - t0, new_tokens=int(tokens))
