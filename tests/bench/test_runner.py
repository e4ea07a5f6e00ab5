"""The runner: random-init synthetic inputs, interleaving, out-of-memory isolation, the API."""

from __future__ import annotations

import pytest
import torch

import vtwcli
from vtwcli.bench import bench, runner
from vtwcli.bench.shaped import llava_shaped


@pytest.fixture(scope="module")
def shaped():
    # LLaVA-1.5's prompt shape (576 vision tokens) with a 4-layer, 64-wide decoder
    return llava_shaped(hidden_size=64, num_layers=4, heads=2, vision_hidden=32)


def test_random_init_run_has_the_shapes_vision_count_and_formula(shaped):
    res = bench(shaped, random_init=True, limit=2, max_new_tokens=3, k=2, fastv_k=1, warmup=0)
    assert res.prompt["avg_vision_tokens"] == 576
    # the prompt length counted here, independently of the runner: the same synthetic prompts
    samples = runner._synthetic_samples(shaped, 2, seed=0, image_size=runner.SYNTHETIC_IMAGE_SIZE,
                                        words=runner.SYNTHETIC_PROMPT_WORDS)  # fmt: skip
    lengths = [shaped.prepare(x.prompt, images=x.images)["input_ids"].shape[1] for x in samples]
    s = sum(lengths) / 2
    assert res.prompt["avg_prompt_tokens"] == s and 600 < s < 700
    # Eq. 1 by hand: per layer 2*(2 s^2 h + 12 s h^2); K=2 of 4 layers see s, two see s - 576
    h = 64

    def layer(n):
        return 2 * (2 * n * n * h + 12 * n * h * h)

    vtw = res.row("vtw")
    assert vtw.tflops * 1e12 == pytest.approx(2 * layer(s) + 2 * layer(s - 576))
    assert vtw.tflops_ratio == pytest.approx((layer(s) + layer(s - 576)) / (2 * layer(s)))
    # the architecture-exact column by hand: q, k, v, o (h x h, 2 heads of 32) and the gated MLP of
    # int(64 * 11008 / 4096) = 172 per token, and Q K^T + P V over the causal pairs; the vision block
    # starts after the chat template's first tokens, which does not change causal pair counts of a block
    n, inter = round(s), int(64 * 11008 / 4096)
    per_token = 2 * (4 * h * h + 3 * h * inter)

    def exact(m):
        return m * per_token + 2 * 2 * (32 + 32) * m * (m + 1) / 2

    assert res.row("baseline").tflops_exact * 1e12 == pytest.approx(4 * exact(n))
    assert vtw.tflops_exact * 1e12 == pytest.approx(2 * exact(n) + 2 * exact(n - 576))
    assert vtw.tflops_exact_ratio == pytest.approx((exact(n) + exact(n - 576)) / (2 * exact(n)))
    assert 0 < res.row("fastv").tflops_exact < res.row("baseline").tflops_exact
    assert res.prompt["exact_flops_vision_start"] > 0
    assert res.row("baseline").new_tokens_mean == 3 == vtw.new_tokens_mean  # forced length
    assert res.task["has_answers"] is False and vtw.accuracy is None


def test_oom_in_one_method_is_reported_in_its_row_and_others_run(shaped, monkeypatch):
    real = runner._run_one
    calls = []

    def flaky(loaded, spec, inputs, gen):
        calls.append(spec.name)
        if spec.name == "fastv" and calls.count("fastv") == 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(loaded, spec, inputs, gen)

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


def test_the_package_itself_is_callable_as_the_library_api(shaped):
    res = vtwcli.bench(shaped, random_init=True, limit=1, max_new_tokens=1, k=2, fastv_k=1, warmup=0)
    assert [r.method for r in res.rows] == ["baseline", "fastv", "vtw"]
    assert res.row("vtw").samples == 1 and res.settings["k"] == 2


def test_bad_options_fail_before_loading(monkeypatch):
    from vtwcli.errors import UsageError

    monkeypatch.setattr(runner, "_load", lambda *a, **k: pytest.fail("loaded a model for a bad option"))
    for kwargs in ({"methods": "vtw,vtw"}, {"limit": 0}, {"warmup": -1}, {"max_new_tokens": 0}):
        with pytest.raises(UsageError):
            bench(**kwargs)
