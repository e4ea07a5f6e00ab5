"""The memory estimate before loading: weights counted on the meta device match a built model,
the KV cache matches a real generate(), and a model that does not fit is refused in one line
before anything is built (free memory faked), unless --force."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

import vtwcli.models.loading as loading
from vtwcli.cli import app
from vtwcli.models import memory
from vtwcli.models.memory import NotEnoughMemoryError, check_fits, estimate

cli = CliRunner()


def _real_bytes(model) -> int:
    """What a built model holds: the bytes of its distinct tensor storages."""
    seen, total = set(), 0
    for t in [*model.parameters(), *model.buffers()]:
        key = t.untyped_storage().data_ptr()
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
    return total


@pytest.mark.parametrize("arch", ["llava", "qwen2_vl", "internvl"])
@pytest.mark.parametrize("dtype, td", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_weights_estimate_equals_a_built_model(arch, dtype, td):
    from tiny import _BUILDERS

    make_config, cls = _BUILDERS[arch]
    config = make_config(3)
    built = cls._from_config(config, dtype=td)
    est = estimate(config, dtype, context_tokens=10)
    assert est.weights == _real_bytes(built)


def test_kv_estimate_equals_the_cache_of_a_real_generate():
    from vtwcli.models import load_model

    tb = load_model("testbed", device="cpu", dtype="fp32")
    # hand-derived: 2 (K, V) x 6 layers x 4 kv heads x 32 dims x 4 bytes = 6144 bytes per token
    assert estimate(tb.config, "fp32", context_tokens=1).kv_cache == 6144
    inputs = tb.prepare(["How many shapes are there?"])
    with torch.inference_mode():
        out = tb.model(**inputs, use_cache=True)
    cache = out.past_key_values
    held = sum(layer.keys.numel() * layer.keys.element_size() + layer.values.numel() * layer.values.element_size()
               for layer in cache.layers)  # fmt: skip
    assert held == estimate(tb.config, "fp32", context_tokens=inputs["input_ids"].shape[1]).kv_cache


@pytest.fixture
def little_free_memory(monkeypatch):
    monkeypatch.setattr(memory, "free_bytes", lambda device: 2 * 2**30)


@pytest.fixture
def building_is_a_failure(monkeypatch):
    class Reached(Exception):
        pass

    def refuse(*args, **kwargs):
        raise Reached("the model was built")

    monkeypatch.setattr(loading, "from_config", refuse)
    return Reached


def test_a_model_that_does_not_fit_is_refused_before_building(little_free_memory, building_is_a_failure, tmp_path):
    res = cli.invoke(app, ["run", "--model", "llava-1.5-7b", "--random-init", "--prompt", "x"])
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: llava-1.5-7b needs about "), res.output
    for hint in ("2.0 GiB is free", "--dtype bf16", "a smaller model", "--shrink", "--force"):
        assert hint in lines[0]
    # the same for the other commands, and for a saved model (its config.json, before any weight is read)
    import json

    from vtwcli.models import shipped_config_dict

    saved = tmp_path / "llava7b"
    saved.mkdir()
    (saved / "config.json").write_text(json.dumps(shipped_config_dict("llava-1.5-7b")))
    for cmd in (["bench", "--model", "llava-1.5-7b", "--random-init"],
                ["calibrate", "--model", str(saved), "--no-save"],
                ["run", "--model", str(saved), "--prompt", "x", "--k", "1"]):  # fmt: skip
        res = cli.invoke(app, cmd)
        assert res.exit_code == 2 and res.output.startswith("error: ") and "needs about" in res.output, res.output


def test_force_skips_the_check(little_free_memory, building_is_a_failure):
    res = cli.invoke(app, ["run", "--model", "llava-1.5-7b", "--random-init", "--prompt", "x", "--force"])
    assert isinstance(res.exception, building_is_a_failure)  # got past the check, to building


def test_the_estimate_is_weights_kv_and_overhead(monkeypatch):
    from vtwcli.models import shipped_config_dict
    from vtwcli.models.loading import config_from_dict

    config = config_from_dict(shipped_config_dict("llava-1.5-7b"))
    est = estimate(config, "bf16", context_tokens=1000)
    # LLaVA-1.5-7B has 7,063,427,072 parameters (its model card): 2 bytes each in bf16
    assert abs(est.weights - 7_063_427_072 * 2) / (7_063_427_072 * 2) < 0.01
    # 2 x 32 layers x 32 heads x 128 dims x 2 bytes per token
    assert est.kv_cache == 2 * 32 * 32 * 128 * 2 * 1000
    assert est.total == est.weights + est.kv_cache + est.overhead
    monkeypatch.setattr(memory, "free_bytes", lambda device: est.total)
    assert check_fits(config, name="m", dtype="bf16", device="cpu", context_tokens=1000) == est
    monkeypatch.setattr(memory, "free_bytes", lambda device: est.total - 1)
    with pytest.raises(NotEnoughMemoryError):
        check_fits(config, name="m", dtype="bf16", device="cpu", context_tokens=1000)
    assert check_fits(config, name="m", dtype="bf16", device="cpu", context_tokens=1000, force=True) is None


@pytest.mark.parametrize("command", [["run", "--prompt", "x", "--k", "1"], ["calibrate", "--no-save"], ["bench"], ["inspect"]])
def test_every_model_command_takes_force(command, little_free_memory, tmp_path):
    # a saved model's config.json (no weights): refused by the estimate, and with --force past it,
    # to reading the weights (which are not there)
    import json

    from vtwcli.models import shipped_config_dict

    saved = tmp_path / "llava7b"
    saved.mkdir()
    (saved / "config.json").write_text(json.dumps(shipped_config_dict("llava-1.5-7b")))
    cmd = [command[0], "--model", str(saved), *command[1:]]
    refused = cli.invoke(app, cmd)
    assert refused.exit_code == 2 and "needs about" in refused.output, refused.output
    forced = cli.invoke(app, [*cmd, "--force"])
    assert "needs about" not in forced.output and "No such option" not in forced.output, forced.output
    assert forced.exit_code != 0  # no weights to read


def test_weights_before_loading_equal_the_loaded_model(tmp_path):
    from vtwcli.models import load_model
    from vtwcli.models.loading import weights_bytes_before_loading

    for dtype in ("auto", "bf16"):
        tb = load_model("testbed", device="cpu", dtype=dtype)
        assert weights_bytes_before_loading("testbed", device="cpu", dtype=dtype) == _real_bytes(tb.model)
    assert weights_bytes_before_loading(str(tmp_path), device="cpu") is None  # no config.json: the load says why
