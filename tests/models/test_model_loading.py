"""Loading: the testbed, a saved directory, a hub id from the local cache (offline), and the
errors for what cannot load."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from vtwcli.errors import ModelNotFoundError, UsageError
from vtwcli.models import load_model
from vtwcli.models.registry import TESTBED_DIR

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def testbed():
    return load_model("testbed", device="cpu")


@pytest.fixture(scope="module")
def saved_dir(tmp_path_factory):
    """A tiny LLaVA (testbed tokenizer/processor, 2 random layers) saved the way the hub stores models."""
    from transformers import AutoProcessor, LlavaConfig, LlavaForConditionalGeneration

    cfg = LlavaConfig.from_pretrained(TESTBED_DIR)
    cfg.text_config.num_hidden_layers = 2
    torch.manual_seed(1)
    model = LlavaForConditionalGeneration(cfg).eval()
    out = tmp_path_factory.mktemp("tiny-llava")
    model.save_pretrained(out)
    AutoProcessor.from_pretrained(TESTBED_DIR).save_pretrained(out)
    return out, model


def test_testbed_facts(testbed):
    cfg = json.loads((TESTBED_DIR / "config.json").read_text())
    assert testbed.alias == "testbed" and testbed.model_id == "vtwcli/testbed"
    assert testbed.num_layers == cfg["text_config"]["num_hidden_layers"]
    assert (testbed.device, testbed.dtype, testbed.attn) == ("cpu", "fp32", "sdpa")
    assert testbed.arch is not None and testbed.arch.model_type == "llava"
    ref = testbed.model_ref()
    assert (ref.alias, ref.id, ref.num_layers, ref.architecture) == ("testbed", "vtwcli/testbed", testbed.num_layers, "llava")


def test_prepare_and_generate_match_plain_transformers(testbed):
    """prepare() + generate() equal what transformers gives when driven by hand."""
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    img = Image.new("RGB", (72, 72), (255, 255, 255))
    prompts = ["what colour is the square ?", "how many shapes are there ?"]
    ours = testbed.generate(testbed.prepare(prompts, images=[img, img]), max_new_tokens=3)

    proc = AutoProcessor.from_pretrained(TESTBED_DIR)
    proc.tokenizer.padding_side = "left"
    model = LlavaForConditionalGeneration.from_pretrained(TESTBED_DIR).eval()
    texts = [f"USER: <image>\n{p} ASSISTANT:" for p in prompts]  # the testbed's chat layout, written out
    batch = proc(text=texts, images=[img, img], return_tensors="pt", padding=True)
    out = model.generate(**batch, max_new_tokens=3, do_sample=False, pad_token_id=proc.tokenizer.pad_token_id)
    ref = [s.strip() for s in proc.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)]
    assert ours == ref


def test_saved_directory_loads_the_same_weights(saved_dir):
    path, model = saved_dir
    lm = load_model(str(path), device="cpu")
    assert lm.alias is None and lm.model_id == str(path.resolve()) and lm.num_layers == 2
    ref = dict(model.named_parameters())
    for name, p in lm.model.named_parameters():
        assert torch.equal(p, ref[name]), name


def _fake_hub_cache(root: Path, repo_id: str, src: Path) -> None:
    """Lay ``src`` out as huggingface_hub's cache does: refs/main -> snapshots/<commit>/files."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = root / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in src.iterdir():
        (snap / f.name).write_bytes(f.read_bytes())


def test_hub_id_from_the_local_cache_offline(saved_dir, tmp_path):
    """A hub id goes through the same path as online use, served from the cache with the hub off."""
    path, model = saved_dir
    _fake_hub_cache(tmp_path, "vtw-test/tiny-llava", path)
    code = (
        "import torch, json; from vtwcli.models import load_model; "
        "lm = load_model('vtw-test/tiny-llava', device='cpu'); "
        "print(json.dumps([lm.model_id, lm.num_layers, float(lm.model.lm_head.weight.sum())]))"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path), "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    model_id, layers, wsum = json.loads(run.stdout.strip().splitlines()[-1])
    assert (model_id, layers) == ("vtw-test/tiny-llava", 2)
    assert wsum == pytest.approx(float(model.lm_head.weight.detach().sum()), rel=1e-6)


def test_offline_cache_miss_says_how_to_download(monkeypatch, tmp_path):
    import huggingface_hub.constants as hub_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelNotFoundError) as info:
        load_model("llava-1.5-7b", device="cpu")
    msg = str(info.value)
    assert "llava-hf/llava-1.5-7b-hf is not in the local Hugging Face cache" in msg
    assert "huggingface-cli download llava-hf/llava-1.5-7b-hf" in msg


def test_flash_attention_without_the_package(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "flash_attn" else real(n, *a))
    with pytest.raises(UsageError, match="needs the flash-attn package"):
        load_model("testbed", device="cpu", attn="flash_attention_2")


def test_flash_attention_without_cuda(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: object() if n == "flash_attn" else real(n, *a))
    with pytest.raises(UsageError, match="only on a CUDA GPU"):
        load_model("testbed", device="cpu", attn="flash_attention_2")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_without_a_gpu():
    with pytest.raises(UsageError, match="no CUDA GPU is visible"):
        load_model("testbed", device="cuda")


@pytest.mark.parametrize("kw, match", [({"dtype": "fp8"}, "--dtype must be"), ({"attn": "xformers"}, "--attn must be"),
                                       ({"device": "tpu"}, "--device must be")])
def test_bad_option_values(kw, match):
    with pytest.raises(UsageError, match=match):
        load_model("testbed", **kw)


def test_sample_frames_is_uniform(tmp_path):
    """Frame i of a 16-frame clip is grey level 15*i; 8 samples must be frames 0, 2, 4, 6, 9, 11, 13, 15."""
    import av
    import numpy as np

    from vtwcli.models.video import sample_frames

    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=8)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for i in range(16):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 15 * i, dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    frames = sample_frames(path, 8)
    assert frames.shape == (8, 32, 32, 3)
    levels = [round(float(f.mean()) / 15) for f in frames]
    assert levels == [0, 2, 4, 6, 9, 11, 13, 15]


def test_unreachable_hub_is_one_fast_clear_error(monkeypatch, tmp_path):
    import socket
    import time

    from huggingface_hub import constants

    from vtwcli import hub
    from vtwcli.models import load_model

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # an empty cache: nothing is there
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "_reachable", {})

    def no_network(*args, **kwargs):
        raise OSError("no route")

    monkeypatch.setattr(socket, "create_connection", no_network)
    t0 = time.perf_counter()
    with pytest.raises(ModelNotFoundError, match="hub cannot be reached.*huggingface-cli download"):
        load_model("llava-1.5-7b")
    assert time.perf_counter() - t0 < 10  # no 30 s of hub retries
