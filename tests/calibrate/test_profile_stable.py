"""Re-running `vtw calibrate` with the same settings and the same result leaves the profile
byte-identical (no new date, no new timing), across torch thread counts; a changed result
rewrites it."""

from __future__ import annotations

import datetime as real_dt

import pytest
import torch
import yaml

from vtwcli.calibrate import api, calibrate


class _Clock:
    """A datetime module whose now() moves one hour per call (so a new date always differs)."""

    def __init__(self):
        self.calls = 0
        self.timezone = real_dt.timezone
        outer = self

        class _DT:
            @staticmethod
            def now(tz=None):
                outer.calls += 1
                return real_dt.datetime(2030, 1, 1, tzinfo=tz) + real_dt.timedelta(hours=outer.calls)

        self.datetime = _DT


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def test_rerun_with_other_thread_count_leaves_profile_byte_identical(tmp_path, monkeypatch, threads):
    clock = _Clock()
    monkeypatch.setattr(api, "_dt", clock)
    prof = tmp_path / "testbed.yaml"
    threads(1)
    first = calibrate("testbed", "shapes", samples=3, out=prof, device="cpu")
    before = prof.read_bytes()
    mtime = prof.stat().st_mtime_ns
    threads(2)
    second = calibrate("testbed", "shapes", samples=3, out=prof, device="cpu")
    assert second.k == first.k
    assert not first.profile_unchanged and second.profile_unchanged
    assert clock.calls == 2  # a new date was made, and not used: the result is the same
    assert prof.read_bytes() == before
    assert prof.stat().st_mtime_ns == mtime  # not even rewritten
    # a different result (another eta) is a change: new date, new values
    calibrate("testbed", "shapes", samples=3, eta=0.5, out=prof, device="cpu")
    after = yaml.safe_load(prof.read_text())["tasks"]["shapes"]["calibration"]
    assert after["eta"] == 0.5 and after["date"] != yaml.safe_load(before)["tasks"]["shapes"]["calibration"]["date"]


@pytest.mark.parametrize(
    "a, b",
    [  # pairs measured on the testbed: the same KL from float32 forwards with another reduction order
        (0.000478667, 0.00047867),
        (0.0514241, 0.0514242),
        (0.224041, 0.22404),
        (0.00812908, 0.0081291),
        (7.56739e-07, 7.56745e-07),
        (2.09e-09, 2.09892e-09),
    ],
)
def test_kl_precision_absorbs_reduction_order_noise(a, b):
    assert api.round_kl(a) == api.round_kl(b)


def test_kl_precision_keeps_what_matters():
    assert api.round_kl(0.0006873269) == 0.0006873  # 4 significant digits near eta
    assert api.round_kl(4.163147) == 4.163
    assert api.round_kl(0.0) == 0.0 and api.round_kl(3e-9) == 0.0  # float32 noise, not a KL
