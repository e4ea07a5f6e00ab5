"""The runner: random-init synthetic inputs, interleaving, out-of-memory isolation, the API."""

from __future__ import annotations

import pytest
import torch

import vtwcli
from vtwcli.bench import bench, runner
from vtwcli.bench.flops import prefill_tflops
from vtwcli.bench.shaped import llava_shaped


@pytest.fixture(scope="module")
def shaped():
    # LLaVA-1.5's prompt shape (576 vision tokens) with a 4-layer, 64-wide decoder
    return llava_shaped(hidden_size=64, num_layers=4, heads=2, vision_hidden=32)


def test_random_init_run_has_the_shapes_vision_count_and_formula(shaped):
    res = bench(shaped, random_init=True, limit=2, max_new_tokens=3, k=2, fastv_k=1, warmup=0)
    assert res.prompt["avg_vision_tokens"] == 576
    s = res.prompt["avg_prompt_tokens"]
    assert 600 < s < 700
    vtw = res.row("vtw")
    assert vtw.tflops == pytest.approx(prefill_tflops("vtw", s=s, n_vis=576, hidden_size=64, num_layers=4, k=2))
    assert res.row("baseline").new_tokens_mean == 3 == vtw.new_tokens_mean  # forced length
    assert res.task["has_answers"] is False and vtw.accuracy is None


def test_oom_in_one_method_is_reported_in_its_row_and_others_run(shaped, monkeypatch):
    real = runner._run_one
    calls = []

    def flaky(loaded, spec, inputs, gen, meter):
        calls.append(spec.name)
        if spec.name == "fastv" and calls.count("fastv") == 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(loaded, spec, inputs, gen, meter)

    monkeypatch.setattr(runner, "_run_one", flaky)
    res = bench(shaped, random_init=True, limit=3, max_new_tokens=2, k=2, fastv_k=1, warmup=0)
    fastv = res.row("fastv")
    assert fastv.error.startswith("out of memory on sample 2") and fastv.samples == 1
    assert res.row("baseline").samples == 3 and res.row("vtw").samples == 3
    assert calls.count("fastv") == 2  # not retried after running out of memory
    assert any("fastv: out of memory" in n for n in res.notices)
    assert "out of memory" in res.to_markdown()


def test_methods_are_interleaved_with_a_rotating_start(shaped, monkeypatch):
    real = runner._run_one
    order = []
    monkeypatch.setattr(runner, "_run_one", lambda lo, spec, *a: (order.append(spec.name), real(lo, spec, *a))[1])
    bench(shaped, random_init=True, limit=3, max_new_tokens=1, k=2, fastv_k=1, warmup=1)
    warm, measured = order[:3], order[3:]
    assert warm == ["baseline", "fastv", "vtw"]
    assert measured == ["baseline", "fastv", "vtw", "fastv", "vtw", "baseline", "vtw", "baseline", "fastv"]


def test_library_entry_points_are_the_same_function():
    from vtwcli.bench.runner import bench as runner_bench

    assert bench is runner_bench and vtwcli.bench is not None and callable(vtwcli.bench)


def test_bad_options_fail_before_loading(monkeypatch):
    from vtwcli.errors import UsageError

    monkeypatch.setattr(runner, "_load", lambda *a, **k: pytest.fail("loaded a model for a bad option"))
    for kwargs in ({"methods": "vtw,vtw"}, {"limit": 0}, {"warmup": -1}, {"max_new_tokens": 0}):
        with pytest.raises(UsageError):
            bench(**kwargs)
