"""The vicuna_v1 prompt style: LLaVA's original conversation, its prompt length, where it is recorded."""

from __future__ import annotations

import pytest
import yaml

from vtwcli.archs import get_arch, supported
from vtwcli.errors import UsageError
from vtwcli.models.prompting import check_style, vicuna_v1

# LLaVA's conv_vicuna_v1 written out by hand (system sentence, "USER: ", " ", "ASSISTANT:", "</s>")
SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
          "detailed, and polite answers to the user's questions.")  # fmt: skip


def _user(*items):
    return {"role": "user", "content": list(items)}


def test_one_turn_is_llavas_conversation_char_for_char():
    got = vicuna_v1([_user({"type": "image"}, {"type": "text", "text": "What is this?"})])
    assert got == SYSTEM + " USER: <image>\nWhat is this? ASSISTANT:"


def test_two_images_and_a_second_turn():
    conv = [
        _user({"type": "image"}, {"type": "image"}, {"type": "text", "text": "Same?"}),
        {"role": "assistant", "content": [{"type": "text", "text": "No."}]},
        _user({"type": "text", "text": "Why?"}),
    ]
    assert vicuna_v1(conv) == SYSTEM + " USER: <image> <image>\nSame? ASSISTANT: No.</s>USER: Why? ASSISTANT:"


def test_offered_for_llava_15_and_next_only():
    offered = [t for t in supported() if "vicuna_v1" in get_arch(t).prompt_styles]
    assert [get_arch(t).family for t in offered] == ["LLaVA-1.5", "LLaVA-NeXT"]
    assert check_style("vicuna_v1", get_arch(offered[0])) == "vicuna_v1"
    other = next(t for t in supported() if t not in offered)
    with pytest.raises(UsageError, match="LLaVA-1.5 and LLaVA-NeXT families only"):
        check_style("vicuna_v1", get_arch(other))
    with pytest.raises(UsageError, match="--prompt-style must be one of chat, vicuna_v1"):
        check_style("llama3")


def test_prompt_length_for_a_576_token_image_is_the_papers():
    """The paper's convention: s = every prompt token, the 576 image tokens and the system sentence
    included (641.4 on average on MME for LLaVA-1.5-7B). A LLaVA-1.5-shaped model with the shipped
    processor (a word-level tokenizer: one token per word) and the synthetic bench prompt."""
    from vtwcli.bench import bench
    from vtwcli.bench.shaped import llava_shaped

    loaded = llava_shaped(hidden_size=64, num_layers=2, heads=2, vision_hidden=32)
    res = bench(loaded, random_init=True, limit=1, max_new_tokens=1, methods="baseline", warmup=0,
                prompt_style="vicuna_v1", log_samples=True)  # fmt: skip
    assert res.settings["prompt_style"] == "vicuna_v1"
    assert res.prompt["avg_vision_tokens"] == 576
    # BOS + 23 system words + "USER:" + 576 image tokens + 37 words of question + "ASSISTANT:"
    assert res.prompt["avg_prompt_tokens"] == 1 + 23 + 1 + 576 + 37 + 1 == 639
    assert abs(res.prompt["avg_prompt_tokens"] - 641.4) / 641.4 < 0.005
    # the text really is LLaVA's conversation, and it is the system sentence that the chat style lacks
    words = res.samples[0]["prompt"]
    conv = [_user({"type": "image"}, {"type": "text", "text": words})]
    assert loaded._template(conv, "vicuna_v1") == SYSTEM + " USER: <image>\n" + words + " ASSISTANT:"
    vicuna = loaded.prepare(words, images=[_grey()], style="vicuna_v1")["input_ids"].shape[1]
    chat = loaded.prepare(words, images=[_grey()])["input_ids"].shape[1]
    assert vicuna - chat == len(SYSTEM.split()) == 23


def _grey():
    from PIL import Image

    return Image.new("RGB", (640, 480), (128, 128, 128))


def test_calibrate_records_the_style_in_the_profile(tmp_path):
    from vtwcli.calibrate import calibrate
    from vtwcli.models import load_model

    loaded = load_model("testbed", device="cpu")
    out = tmp_path / "p.yaml"
    calibrate(loaded, "shapes", samples=2, out=out, prompt_style="vicuna_v1")
    saved = yaml.safe_load(out.read_text())
    assert saved["tasks"]["shapes"]["calibration"]["prompt_style"] == "vicuna_v1"


def test_run_uses_the_style_asked_for_or_the_profiles(tmp_path, monkeypatch):
    from vtwcli.models import load_model
    from vtwcli.profiles import ModelRef, Profile, TaskEntry, save_profile
    from vtwcli.runner import Runner, RunSettings

    loaded = load_model("testbed", device="cpu")
    texts = []
    real = loaded._template
    monkeypatch.setattr(loaded, "_template", lambda conv, style=None: texts.append(real(conv, style)) or texts[-1])
    image = _grey()
    with Runner(RunSettings(k=3, prompt_style="vicuna_v1"), loaded=loaded) as runner:
        runner.answer("is there a circle", images=[image])
    assert texts[-1].startswith(SYSTEM + " USER: <image>\n") and texts[-1].endswith(" ASSISTANT:")
    # a profile calibrated with vicuna_v1 makes it the default
    path = tmp_path / "p.yaml"
    save_profile(Profile(model=ModelRef(alias="testbed", id="vtwcli/testbed", num_layers=6),
                         tasks={"shapes": TaskEntry(k=4, calibration={"prompt_style": "vicuna_v1"})}), path)  # fmt: skip
    with Runner(RunSettings(profile=str(path)), loaded=loaded) as runner:
        assert runner.prompt_style == "vicuna_v1"
    with Runner(RunSettings(k=3), loaded=loaded) as runner:
        assert runner.prompt_style == "chat"
