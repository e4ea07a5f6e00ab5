"""StepClock, Clock and Stat against hand-made timelines and hand-computed statistics."""

from __future__ import annotations

import pytest
import torch

from vtwcli.bench.result import _spread
from vtwcli.bench.timing import Clock, Stat, StepClock, model_devices


class Timeline:
    """A fake timer returning preset readings, and a fake sync that logs which devices it waited for."""

    def __init__(self, readings):
        self.readings = list(readings)
        self.events: list[tuple] = []

    def timer(self) -> float:
        value = self.readings.pop(0)
        self.events.append(("read", value))
        return value

    def sync(self, devices) -> None:
        self.events.append(("sync", tuple(str(d) for d in devices)))


def test_step_clock_splits_prefill_and_decode_by_hand():
    # generate() starts at 10.0; the first logits at 10.5 (prefill 0.5 s); three more steps end
    # at 10.6, 10.8, 11.1 (decode 0.6 s over 3 steps); generate() returns at 11.2
    tl = Timeline([10.0, 10.5, 10.6, 10.8, 11.1, 11.2])
    clock = StepClock(["cuda:0", "cuda:1"], sync=tl.sync, timer=tl.timer)
    clock.begin()
    scores = torch.zeros(1, 5)
    for _ in range(4):
        assert clock(None, scores) is scores  # a logits processor hands the scores on unchanged
    clock.finish()
    assert clock.prefill_s == pytest.approx(0.5)
    assert clock.decode_s_per_token == pytest.approx(0.2)
    assert clock.total_s == pytest.approx(1.2)
    # every reading is preceded by a sync of every device the model spans
    assert tl.events[0::2] == [("sync", ("cuda:0", "cuda:1"))] * 6
    assert [e[0] for e in tl.events[1::2]] == ["read"] * 6


def test_step_clock_with_one_token_has_no_decode_time():
    tl = Timeline([0.0, 2.0, 2.5])
    clock = StepClock("cpu", sync=tl.sync, timer=tl.timer)
    clock.begin()
    clock(None, torch.zeros(1, 2))
    clock.finish()
    assert clock.prefill_s == 2.0 and clock.decode_s_per_token is None and clock.total_s == 2.5


def test_step_clock_reused_starts_afresh():
    tl = Timeline([0.0, 1.0, 1.5, 5.0, 5.25, 5.5])
    clock = StepClock("cpu", sync=tl.sync, timer=tl.timer)
    for _ in range(2):
        clock.begin()
        clock(None, torch.zeros(1, 2))
        clock.finish()
    assert clock.marks == [5.25] and clock.prefill_s == 0.25 and clock.total_s == 0.5


def test_default_clock_synchronizes_cuda_devices(monkeypatch):
    seen = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda dev=None: seen.append(str(dev)))
    Clock([torch.device("cuda:0"), torch.device("cuda:1"), torch.device("cpu")]).now()
    assert seen == ["cuda:0", "cuda:1"]


def test_model_devices_lists_every_device_once():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    assert model_devices(model) == [torch.device("cpu")]


def test_stat_quantiles_and_half_iqr_by_hand():
    # sorted 1 2 3 4 10: p25 at rank 1 -> 2, p75 at rank 3 -> 4 (linear interpolation, numpy's default)
    st = Stat([10.0, 3.0, 1.0, 4.0, 2.0])
    assert st.median == 3.0 and st.quantile(0.25) == 2.0 and st.quantile(0.75) == 4.0
    # between ranks: 4 values, q = 0.5 -> halfway between 2 and 3
    assert Stat([4.0, 1.0, 3.0, 2.0]).quantile(0.5) == 2.5
    assert Stat([1.0, 2.0, 3.0, 4.0]).quantile(0.1) == pytest.approx(1.3)
    summary = st.summary(1e3)
    assert summary == {"median": 3000.0, "p25": 2000.0, "p75": 4000.0, "min": 1000.0, "max": 10000.0, "n": 5}
    # the table shows median +-half the interquartile range: (4000 - 2000) / 2
    assert _spread(summary) == "3000 ±1000"
    assert Stat([]).summary() is None and Stat([]).median is None
