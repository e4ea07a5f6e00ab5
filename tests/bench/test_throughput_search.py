"""The max-batch search: a fake allocator that runs out of memory above a size, and the
resident-memory meter on this process."""

from __future__ import annotations

import pytest
import torch

from vtwcli.bench.throughput import BatchRun, RssPeakMeter, is_out_of_memory, rss_bytes, search_max_batch


class FakeDevice:
    """An allocator with ``capacity`` bytes that raises torch's out-of-memory error like CUDA's,
    and a meter over it that enforces ``budget`` (the CUDA meter's behaviour: the allocator is
    capped, so the failure is an exception); ``judge_only`` makes the meter judge the peak after
    the fact instead (the CPU meter's behaviour)."""

    def __init__(self, capacity, fixed, budget=None, cpu_error=False):
        self.capacity, self.fixed, self.budget = capacity, fixed, budget if budget is not None else capacity
        self.held, self.peak = fixed, fixed
        self.cpu_error = cpu_error
        self.released = 0
        self.live_at_begin: list[int] = []

    # the allocator
    def alloc(self, n):
        if self.held + n > self.capacity:
            if self.cpu_error:
                raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory")
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {n} bytes")
        self.held += n
        self.peak = max(self.peak, self.held)

    # the PeakMeter protocol
    def current(self):
        return self.held

    def begin(self):
        self.live_at_begin.append(self.held)
        self.peak = self.held

    def end(self):
        return self.peak

    def release(self):
        self.released += 1
        self.held = self.fixed  # what a failed try left behind is freed

    def close(self):
        pass


def make_try(dev, per_row, calls):
    def try_batch(b):
        calls.append(b)
        for _ in range(b):  # rows allocate one by one; a failure leaves the earlier rows held
            dev.alloc(per_row)
        return BatchRun(batch=b, seconds=0.5 * b**0.5, new_tokens=4 * b)

    return try_batch


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 11, 16, 17, 40, 63, 64])
@pytest.mark.parametrize("start", [1, 5, 64])
def test_search_finds_the_largest_size_that_fits(limit, start):
    per_row, fixed, cap = 1000, 5000, 64
    dev = FakeDevice(capacity=fixed + limit * per_row, fixed=fixed)
    calls = []
    res = search_max_batch(make_try(dev, per_row, calls), dev, cap=cap, start=start)
    assert res.max_batch == limit  # brute force: limit rows fit, limit + 1 do not
    assert res.capped == (limit == cap)
    assert res.best.batch == limit and res.best.tokens_per_s == pytest.approx(4 * limit / (0.5 * limit**0.5))
    # every failure is in the tries, with the allocator's message, and nothing was left held
    fails = [t for t in res.tries if not t.fits]
    assert all(t.batch > limit and t.reason.startswith("out of memory: CUDA out of memory") for t in fails)
    assert all(t.batch <= limit for t in res.tries if t.fits)
    assert dev.live_at_begin == [fixed] * len(calls)  # each try started from an emptied allocator
    assert dev.released == len(calls)
    assert len(calls) == len(set(calls)) <= 16  # no size tried twice


def test_nothing_fits_gives_zero_and_the_reasons():
    dev = FakeDevice(capacity=5500, fixed=5000)
    calls = []
    res = search_max_batch(make_try(dev, 1000, calls), dev, cap=32, start=8)
    assert res.max_batch == 0 and res.best is None
    assert calls == [8, 4, 2, 1]
    assert all(not t.fits and "out of memory" in t.reason for t in res.tries)


def test_cpu_allocator_failure_is_caught_too():
    dev = FakeDevice(capacity=5000 + 3 * 1000, fixed=5000, cpu_error=True)
    res = search_max_batch(make_try(dev, 1000, []), dev, cap=10)
    assert res.max_batch == 3
    assert any("can't allocate memory" in t.reason for t in res.failures)


def test_a_peak_over_the_budget_fails_without_an_exception():
    # the CPU meter judges after the run: the allocator could hold 20 rows, the budget only 6
    dev = FakeDevice(capacity=5000 + 20 * 1000, fixed=5000, budget=5000 + 6 * 1000)
    res = search_max_batch(make_try(dev, 1000, []), dev, cap=32)
    assert res.max_batch == 6
    over = [t for t in res.failures if t.reason.startswith("over budget")]
    assert over and all(t.peak_bytes > dev.budget for t in over)


def test_an_error_that_is_not_out_of_memory_propagates():
    dev = FakeDevice(capacity=10**9, fixed=0)

    def broken(b):
        raise ValueError("a bug, not a full device")

    with pytest.raises(ValueError, match="a bug"):
        search_max_batch(broken, dev, cap=8)


def test_out_of_memory_recognition():
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    with pytest.raises(RuntimeError) as info:
        torch.empty(2**62, dtype=torch.uint8)  # the real CPU allocator's failure
    assert is_out_of_memory(info.value)


def test_rss_meter_sees_a_tensor_and_resets_between_tries():
    meter = RssPeakMeter(budget=10**12)
    try:
        meter.begin()
        start = rss_bytes()
        big = torch.ones(200 * 2**20, dtype=torch.uint8)  # 200 MiB, touched
        del big
        peak = meter.end()
        meter.release()
        assert peak - start >= 190 * 2**20
        assert rss_bytes() - start < 50 * 2**20  # given back (fixed mmap threshold)
        meter.begin()
        small = torch.ones(20 * 2**20, dtype=torch.uint8)
        del small
        second = meter.end()
        assert second - start < 100 * 2**20  # the first try's peak was forgotten
    finally:
        meter.close()
