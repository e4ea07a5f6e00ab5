"""The runner's stages one by one: plan, load, measure (timed region, memory pass, pruning check), summarize."""

from __future__ import annotations

import contextlib
import sys
import threading
from pathlib import Path

import pytest
import torch
from bench_fakes import GIB, FakeCuda, FakeNvml

from vtwcli.bench import runner
from vtwcli.bench.memory import MemoryMeter
from vtwcli.bench.runner import Measured, MethodSpec, RunOutcome, Setup
from vtwcli.errors import UsageError


@pytest.fixture(scope="module")
def setup():
    p = runner.plan("testbed", methods="baseline,fastv,vtw", k=3, fastv_k=1, limit=3, max_new_tokens=2, warmup=0,
                    device="cpu")  # fmt: skip
    return p, runner.load(p)


def test_plan_checks_options_and_loads_nothing(monkeypatch):
    monkeypatch.setattr(runner, "_load", lambda *a, **k: pytest.fail("plan loaded a model"))
    p = runner.plan("testbed", methods="vtw, baseline", k=2, limit=5)
    assert p.methods == ("vtw", "baseline") and p.needs_k and p.task_name == "shapes"
    with pytest.raises(UsageError, match="listed twice"):
        runner.plan("testbed", methods="vtw,vtw")
    with pytest.raises(UsageError, match="--limit must be an integer at least 1"):
        runner.plan("testbed", limit=0)


def test_load_resolves_k_and_one_spec_per_row(setup):
    p, s = setup
    assert [(x.key, x.name, x.k, x.ratio) for x in s.specs] == [
        ("baseline", "baseline", None, None), ("fastv", "fastv", 1, 0.5), ("vtw", "vtw", 3, None)]
    assert len(s.samples) == 3 and s.gen["max_new_tokens"] == 2 and s.gen["do_sample"] is False
    # the half-the-layers default when neither --k nor a profile is given, with a notice
    specs, k, _, notices = runner.resolve_specs(runner.plan("testbed", methods="vtw", random_init=True), 6, "tb")
    assert k == 3 and specs[0].k == 3 and "half of 6 layers" in notices[0]


class Recorder:
    """Logs the start and end of every timed region next to every meter call (fake CUDA and NVML)."""

    def __init__(self):
        self.events: list[str] = []
        self.lock = threading.Lock()

    def log(self, what: str) -> None:
        with self.lock:
            self.events.append(what)


def test_timed_region_holds_no_allocator_or_nvml_call(setup, monkeypatch):
    _, s = setup
    rec = Recorder()

    class LoggedCuda(FakeCuda):
        def __getattribute__(self, name):
            attr = object.__getattribute__(self, name)
            if name in ("synchronize", "empty_cache", "reset_peak", "max_allocated", "allocated"):
                rec.log(f"cuda.{name}")
            return attr

    class LoggedNvml(FakeNvml):
        def nvmlDeviceGetMemoryInfo(self, handle):
            rec.log("nvml.used")
            return super().nvmlDeviceGetMemoryInfo(handle)

    class LoggedClock(runner.StepClock):
        def begin(self):
            super().begin()
            rec.log("timed.begin")

        def finish(self):
            rec.log("timed.end")
            super().finish()

    monkeypatch.setattr(runner, "StepClock", LoggedClock)
    cuda = LoggedCuda()
    meter = MemoryMeter("cuda:0", ["cuda:0", "cuda:1"], backend=cuda,
                        nvml=LoggedNvml({"GPU-aaaa-0000": GIB, "GPU-bbbb-1111": GIB}))  # fmt: skip
    got = runner.measure(s, [0, 1, 2], meter=meter, warmup=1)
    inside, timed = False, 0
    for e in rec.events:
        if e == "timed.begin":
            inside, timed = True, timed + 1
        elif e == "timed.end":
            inside = False
        else:
            assert not inside, f"{e} ran inside a timed region: {rec.events}"
    assert timed == 3 + 3 * 3  # a warm-up round and 3 samples x 3 rows
    # ... and memory was measured, in its own runs: every row on every sample
    assert rec.events.count("cuda.reset_peak") == 2 * 9  # two devices x nine runs
    assert all(o.memory.peak_bytes is not None for outs in got.outcomes.values() for o in outs)


def test_a_row_that_did_not_withdraw_fails(setup, monkeypatch):
    _, s = setup
    monkeypatch.setattr(MethodSpec, "engine", lambda self, model: contextlib.nullcontext())  # engine never attached
    got = runner.measure(s, [0, 1], meter=MemoryMeter("cpu"), warmup=0)
    assert got.errors["vtw"].startswith("did not withdraw on sample 1")
    assert got.errors["fastv"].startswith("did not withdraw on sample 1")
    assert "baseline" not in got.errors and all(o is not None for o in got.outcomes["baseline"][:2])
    assert got.outcomes["vtw"] == [None, None, None]


def test_a_row_that_withdrew_records_the_kept_count(setup):
    _, s = setup
    got = runner.measure(s, [0], meter=MemoryMeter("cpu"), warmup=0)
    assert not got.errors
    base, vtw = got.outcomes["baseline"][0], got.outcomes["vtw"][0]
    assert base.kept_tokens is None and base.vision_tokens > 0
    assert vtw.kept_tokens == vtw.prompt_tokens - vtw.vision_tokens  # every vision token withdrawn


def _outcome(prefill, decode, total, tokens=4):
    return RunOutcome(reply="", token_ids=list(range(tokens)), prompt_tokens=100, vision_tokens=60,
                      prefill_s=prefill, decode_s_per_token=decode, total_s=total, kv_bytes=1000,
                      kv_layer_tokens=[])  # fmt: skip


def test_summarize_from_hand_made_outcomes(setup):
    p, s = setup
    specs = s.specs[:1] + s.specs[2:]  # baseline, vtw
    small = Setup(loaded=s.loaded, specs=specs, samples=s.samples, task=None, gen=s.gen, task_info={"name": "x"})
    outcomes = {
        "baseline": [_outcome(0.10, 0.010, 0.20), _outcome(0.12, 0.012, 0.22), _outcome(0.30, 0.011, 0.50)],
        "vtw": [_outcome(0.05, 0.008, 0.10), _outcome(0.06, 0.009, 0.12), None],
    }
    shares = [{"device": "cpu", "device_name": "cpu", "meter": {}}]
    res = runner.summarize(p, small, Measured(outcomes=outcomes, errors={"vtw": "out of memory on sample 3"}),
                           ran_on=[0, 0, 0], shares=shares)  # fmt: skip
    base, vtw = res.row("baseline"), res.row("vtw")
    assert base.samples == 3 and vtw.samples == 2 and vtw.error == "out of memory on sample 3"
    assert base.prefill_ms["median"] == pytest.approx(120.0) and vtw.prefill_ms["median"] == pytest.approx(55.0)
    # paired per sample: 0.05/0.10 and 0.06/0.12 -> both 0.5 (the ratio of the medians, 55/120, is not it)
    assert vtw.prefill_ratio == pytest.approx(0.5) and vtw.prefill_ratio_ci95 == pytest.approx([0.5, 0.5])
    assert res.paired["vtw/baseline"]["e2e"]["median"] == pytest.approx((0.10 / 0.20 + 0.12 / 0.22) / 2)
    assert res.paired["vtw/baseline"]["prefill"]["verdict"] == "faster"
    # end to end per generated token: 4 tokens each -> 200/4 = 50, 220/4 = 55, 500/4 = 125 ms
    assert base.e2e_ms_per_token["median"] == pytest.approx(55.0)
    assert res.prompt["avg_prompt_tokens"] == 100 and res.prompt["avg_vision_tokens"] == 60
    assert vtw.per_rank[0]["samples"] == 2


def test_sweep_clock_synchronizes_every_device(monkeypatch):
    """The calibration sweep's timings wait for every device the model spans (fake devices here)."""
    from vtwcli.bench import timing
    from vtwcli.calibrate import sweep

    synced = []
    monkeypatch.setattr(sweep, "model_devices", lambda model: [torch.device("cuda:0"), torch.device("cuda:1")])
    monkeypatch.setattr(timing, "synchronize", lambda devices: synced.append([str(d) for d in devices]))
    model = torch.nn.Linear(2, 2)
    clock = sweep.sweep_clock(model)
    clock.now()
    assert synced == [["cuda:0", "cuda:1"]]


@pytest.mark.parametrize("fn", ["fast_sweep", "slow_sweep"])
def test_calibrate_sweep_syncs_before_each_reading(monkeypatch, fn):
    from vtwcli.bench import timing
    from vtwcli.calibrate import sweep

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import tiny
    synced = []
    real = timing.synchronize
    monkeypatch.setattr(timing, "synchronize", lambda devices: (synced.append(list(devices)), real(devices))[1])
    model = tiny.build_tiny_model("llava", num_layers=3)
    inputs = tiny.tiny_inputs(model, rows=(1,))
    stats = sweep.SweepStats()
    getattr(sweep, fn)(model, inputs, [1, 2], stats=stats, parts=sweep.model_parts(model))
    # a reading before the full forward, after it, and after the withdrawn candidates
    assert synced == [[torch.device("cpu")]] * 3
    assert stats.full_seconds > 0 and stats.tail_seconds > 0
