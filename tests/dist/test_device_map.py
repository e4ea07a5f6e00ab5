"""A model whose layers sit in different places (accelerate's big-model placement) on CPU.

The testbed is loaded with its upper decoder layers offloaded to disk (their weights are
on the meta device and stream in per forward, through accelerate's hooks, the same
mechanism that moves activations between GPUs under ``--device-map auto``). Withdrawal
must give the same logits as on the plainly loaded model, and must still change them.
Layers on two different GPUs are checked by scripts/gpu_multi.sh.
"""

from __future__ import annotations

import pytest
import torch

from vtwcli.engine import withdraw
from vtwcli.models import load_model


def _split_map(model, layers, on_disk: int) -> dict[str, str]:
    """Every module on the CPU except the last ``on_disk`` decoder layers, which go to disk."""
    out: dict[str, str] = {}

    def walk(module, prefix: str) -> None:
        for name, child in module.named_children():
            full = f"{prefix}{name}"
            if child is layers:
                for i in range(len(layers)):
                    out[f"{full}.{i}"] = "disk" if i >= len(layers) - on_disk else "cpu"
            elif any(m is layers for m in child.modules()):
                walk(child, full + ".")
            else:
                out[full] = "cpu"

    walk(model, "")
    return out


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    torch.set_num_threads(1)
    plain = load_model("testbed", device="cpu", dtype="fp32")
    layers = plain.arch.decoder_layers(plain.model)
    dmap = _split_map(plain.model, layers, on_disk=3)
    mapped = load_model(
        "testbed", device="cpu", dtype="fp32", device_map=dmap,
        offload_folder=str(tmp_path_factory.mktemp("offload")),
    )  # fmt: skip
    return plain, mapped, dmap


def _inputs(loaded):
    from vtwcli.data import get_task

    task = get_task("shapes", limit=2, seed=1)
    prompts = [task.prompt(r) for r in task.records]
    images = [task.images(r) for r in task.records]
    return loaded.prepare(prompts, images=images)


def _last_logits(loaded, inputs):
    with torch.inference_mode():
        return loaded.model(**inputs, use_cache=False).logits[:, -1].float()


def test_the_upper_layers_really_are_offloaded(pair):
    _, mapped, dmap = pair
    layers = mapped.arch.decoder_layers(mapped.model)
    assert sorted(set(dmap.values())) == ["cpu", "disk"]
    assert all(p.device.type == "meta" for p in layers[-1].parameters())
    assert all(p.device.type == "cpu" for p in layers[0].parameters())
    assert mapped.device == "cpu"  # inputs go to accelerate's main device


@pytest.mark.parametrize("k", [1, 4])
def test_withdrawal_on_an_offloaded_model_matches_the_plain_model(pair, k):
    plain, mapped, _ = pair
    inputs = _inputs(plain)
    full = _last_logits(plain, inputs)
    assert torch.allclose(_last_logits(mapped, inputs), full, atol=1e-5)
    with withdraw(plain.model, k):
        ref = _last_logits(plain, inputs)
    with withdraw(mapped.model, k):
        got = _last_logits(mapped, inputs)
    assert torch.allclose(got, ref, atol=1e-5), (got - ref).abs().max()
    assert (got - full).abs().max() > 1e-3  # withdrawal did something on the offloaded layers


def test_generation_with_withdrawal_matches_on_an_offloaded_model(pair):
    plain, mapped, _ = pair
    inputs = _inputs(plain)
    with withdraw(plain.model, 3):
        ref = plain.generate(inputs, max_new_tokens=4)
    with withdraw(mapped.model, 3):
        got = mapped.generate(inputs, max_new_tokens=4)
    assert got == ref


def test_the_calibration_sweep_runs_through_offloaded_layers(pair):
    from vtwcli.calibrate import calibrate

    plain, mapped, _ = pair
    ref = calibrate(plain, "shapes", samples=2, seed=5, write=False)
    got = calibrate(mapped, "shapes", samples=2, seed=5, write=False)
    assert got.k == ref.k
    for k, values in ref.per_sample.items():
        assert got.per_sample[k] == pytest.approx(values, rel=1e-4, abs=1e-8)
    assert any(v > 0 for v in got.per_sample[1])


def test_bench_takes_device_map_auto():
    from vtwcli.bench import bench

    result = bench(limit=1, max_new_tokens=2, warmup=0, methods="baseline,vtw", k=3, device_map="auto")
    assert result.settings["device_map"] == "auto"
    assert result.row("vtw").samples == 1


def test_a_bad_device_map_is_refused_before_loading():
    from vtwcli.errors import UsageError

    with pytest.raises(UsageError, match="--device-map must be one of auto"):
        load_model("testbed", device_map="everywhere")
