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


# ---------------------------------------------------------------- the --memory-budget mode


def check_budget_before_loading(p: Any) -> None:
    """Refuse a ``--memory-budget`` below the model's weights before the model loads, where the
    weights can be counted from its config (a registered alias, a directory, the local cache);
    :func:`budget_run` checks the loaded model's own bytes again."""
    if hasattr(p.model, "model") and hasattr(p.model, "prepare"):
        return  # already loaded: budget_run counts its bytes
    from vtwcli.bench.budget import check_budget
    from vtwcli.models.loading import weights_bytes_before_loading
    from vtwcli.models.registry import resolve

    weights = weights_bytes_before_loading(
        p.model, dtype=p.dtype, device=p.device, random_init=p.random_init, shrink=bool(p.shrink),
    )  # fmt: skip
    if weights is not None:
        resolved = resolve(p.model)
        check_budget(int(p.memory_budget), weights, model_name=resolved.alias or resolved.model_id)


def budget_run(p: Any, setup: Any, *, progress: Callable[[int, int, str], None] | None = None) -> Any:
    """``vtw bench --memory-budget``: for each row, the largest batch of the task's first
    prompts that fits the budget (searched; predicted beside), then ``p.repeats`` interleaved
    timed rounds with every row at its own max batch. Returns a :class:`BenchResult` whose
    rows carry ``max_batch``, ``tokens_per_s`` (at the max batch) and their ratios."""

    from vtwcli.bench import runner as R
    from vtwcli.bench.budget import Geometry, check_budget, format_bytes, predict, weights_bytes
    from vtwcli.bench.paired import compare

    loaded, specs, samples, gen = setup.loaded, setup.specs, setup.samples, setup.gen
    budget = int(p.memory_budget)
    weights = weights_bytes(loaded.model)
    check_budget(budget, weights, model_name=setup.name)
    cap = len(samples)
    meter = peak_meter(budget, loaded.device)
    cuda = isinstance(meter, CudaPeakMeter)
    notices = list(setup.notices)
    searches: dict[str, SearchResult] = {}
    preds: dict[str, Any] = {}
    rounds: dict[str, list[BatchRun | None]] = {s.key: [] for s in specs}
    last: dict[str, list[Any]] = {}
    errors: dict[str, str] = {}
    done = 0
    try:
        for _ in range(p.warmup):  # lazily created buffers exist before the fixed memory is read
            for spec in specs:
                if progress:
                    progress(0, 0, f"warm-up {spec.key}")
                with contextlib.suppress(Exception):
                    R._run_batch(loaded, spec, setup.batch_inputs([0]), gen)
        meter.release()
        fixed = meter.current()
        if fixed >= budget:
            notices.append(
                f"the process already holds {format_bytes(fixed)} before any batch (weights {format_bytes(weights)}), "
                f"at or above the {format_bytes(budget)} budget: no batch can fit"
            )
        probe = setup.batch_inputs(list(range(cap)))
        width = int(probe["input_ids"].shape[1])
        placeholder = R._placeholders(loaded)
        vision = max(int(sum(int((row == t).sum()) for t in placeholder)) for row in probe["input_ids"])
        del probe
        meter.release()
        geo = Geometry.from_config(loaded.model.config, element_size=loaded.model.dtype.itemsize, attn=loaded.attn)
        for spec in specs:
            modelled = {"white": "vtw", "fastv-mask": "baseline"}.get(spec.name, spec.name)  # white withdraws like vtw; fastv-mask caches all
            pred = None
            if modelled in ("baseline", "vtw", "fastv", "rand"):
                pred = predict(geo, modelled, prompt_tokens=width, vision_tokens=vision,
                               new_tokens=int(gen["max_new_tokens"]), k=spec.k,
                               ratio=spec.ratio if spec.ratio is not None else 0.5, fixed_bytes=fixed,
                               budget_bytes=budget)  # fmt: skip
            preds[spec.key] = pred

            def try_batch(b: int, spec=spec) -> BatchRun:
                outs = R._run_batch(loaded, spec, setup.batch_inputs(list(range(b)), spec.inputs), gen)
                return BatchRun(batch=b, seconds=outs[0].total_s, new_tokens=sum(len(o.token_ids) for o in outs))

            def told(t: Try, spec=spec) -> None:
                nonlocal done
                done += 1
                if progress:
                    progress(done, 0, f"{spec.key}: batch {t.batch} {'fits' if t.fits else 'does not fit'}")

            start = min(cap, max(1, (pred.max_batch if pred else None) or 1))
            searches[spec.key] = search_max_batch(try_batch, meter, cap=cap, start=start, on_try=told)

        # timed rounds: every row at its own max batch, interleaved, the first row rotating
        runnable = [s for s in specs if searches[s.key].max_batch >= 1]
        for r in range(p.repeats):
            order = runnable[r % len(runnable):] + runnable[: r % len(runnable)] if runnable else []
            for spec in order:
                if spec.key in errors:
                    rounds[spec.key].append(None)
                    continue
                mb = searches[spec.key].max_batch
                if progress:
                    progress(done, 0, f"round {r + 1}/{p.repeats}: {spec.key} at batch {mb}")
                inputs = setup.batch_inputs(list(range(mb)), spec.inputs)
                try:
                    outs = R._run_batch(loaded, spec, inputs, gen)
                except Exception as err:  # noqa: BLE001 - only out of memory is expected here
                    if not is_out_of_memory(err):
                        raise
                    errors[spec.key] = f"out of memory in timed round {r + 1} at batch {mb}: {short_reason(err)}"
                    rounds[spec.key].append(None)
                    err = None
                    meter.release()
                    continue
                del inputs
                rounds[spec.key].append(BatchRun(batch=mb, seconds=outs[0].total_s,
                                                 new_tokens=sum(len(o.token_ids) for o in outs)))  # fmt: skip
                last[spec.key] = outs
                meter.release()
        meter_text = (
            "CUDA caching allocator capped at the budget (set_per_process_memory_fraction); peak = reserved bytes"
            if cuda else
            f"process resident memory, peak from {meter.method}"
            + (" with malloc's mmap threshold fixed at 128 KiB" if getattr(meter, "mmap_threshold_fixed", False) else "")
        )  # fmt: skip
    finally:
        meter.close()

    outcomes = {s.key: [None] * len(samples) for s in specs}
    for key, outs in last.items():
        for i, o in enumerate(outs):
            outcomes[key][i] = o
    measured = R.Measured(outcomes=outcomes, errors=errors, notices=[])
    ran_on = [0 if any(outcomes[s.key][i] is not None for s in specs) else None for i in range(len(samples))]
    share = {"device": str(loaded.device), "device_name": R.device_name(loaded, cuda), "meter": {"cuda": cuda}}
    result = R.summarize(p, setup, measured, ran_on=ran_on, shares=[share])
    result.notices = notices + [n for n in result.notices if n not in notices]
    result.paired = {}  # the rows ran different batches: per-sample pairs would mean nothing here

    base_spec = next((s for s in specs if s.name == "baseline"), None)
    for row, spec in zip(result.rows, specs, strict=True):
        res, pred = searches[spec.key], preds[spec.key]
        row.max_batch, row.max_batch_capped = res.max_batch, res.capped
        row.max_batch_predicted = pred.max_batch if pred else None
        at_max = next((t for t in res.tries if t.fits and t.batch == res.max_batch), None)
        row.peak_bytes_at_max_batch = None if at_max is None else at_max.peak_bytes
        row.search = {**res.to_dict(), "prediction": pred.to_dict() if pred else None}
        runs = [x for x in rounds[spec.key] if x is not None]
        if runs:
            seconds = sum(x.seconds for x in runs)
            row.samples_per_s = sum(x.batch for x in runs) / seconds
            row.tokens_per_s = sum(x.new_tokens for x in runs) / seconds
        for t in res.failures:
            notices_line = f"{spec.key}: batch {t.batch} did not fit ({t.reason})"
            result.notices.append(notices_line)
        if res.capped:
            result.notices.append(f"{spec.key}: all {cap} prompts fit in one batch; raise --limit to search higher")
    if base_spec is not None:
        base = result.row(base_spec.key)
        base_runs = rounds[base_spec.key]
        for row, spec in zip(result.rows, specs, strict=True):
            row.max_batch_ratio = (row.max_batch / base.max_batch) if base.max_batch else None
            bp, mp = base.max_batch_predicted, row.max_batch_predicted
            row.max_batch_predicted_ratio = (mp / bp) if bp and mp is not None else None
            mine = rounds[spec.key]
            if len(mine) == len(base_runs):
                ratios = [x.tokens_per_s / y.tokens_per_s for x, y in zip(mine, base_runs, strict=True)
                          if x and y and y.tokens_per_s > 0]  # fmt: skip
                if ratios:
                    got = compare(ratios, seed=p.seed)
                    row.tokens_per_s_ratio, row.tokens_per_s_ratio_ci95 = got["median"], got["ci95"]
    result.settings.update({
        "mode": "memory-budget",
        "batch_size": None,
        "memory_budget": budget,
        "memory_budget_text": format_bytes(budget),
        "memory_budget_meter": meter_text,
        "fixed_bytes": fixed,
        "weights_bytes": weights,
        "max_batch_cap": cap,
        "repeats": p.repeats,
        "order": "search per row (doubling from the prediction, then bisection), then timed rounds with every row "
                 "at its max batch, round-robin, the starting row rotating",
    })  # fmt: skip
    return result
