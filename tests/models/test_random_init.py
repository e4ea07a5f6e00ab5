"""random_init: every registered architecture builds from its shipped config (shrunken here),
its (synthetic) processor inserts as many placeholders as the model produces features, and
the model answers."""

import pytest
import torch
from PIL import Image

from tests.models.shrink import TEXT_LAYERS, shrunk_config_dict
from vtwcli.errors import ModelNotFoundError, UsageError
from vtwcli.models import SPECS, config_from_dict, from_config, load_model
from vtwcli.models.synthetic import synthetic_processor

torch.set_num_threads(1)

# Placeholder tokens for one image, worked out by hand from the published preprocessing.
HAND_COUNTS = {
    "llava-1.5-7b": ((336, 336), 576),  # (336/14)^2
    "llava-1.5-13b": ((336, 336), 576),
    "video-llava-7b": ((224, 224), 256),  # (224/14)^2
    "qwen2-vl-2b": ((336, 336), 144),  # (336/14)^2 patches, merged 2x2
    "qwen2-vl-7b": ((448, 448), 256),
    "qwen2.5-vl-3b": ((336, 336), 144),
    "internvl2-4b": ((448, 448), 256),  # one 448 tile (no crops for a square tile), pixel-shuffle 0.5
    "qwen3-vl-2b": ((384, 384), 144),  # (384/16)^2 patches, merged 2x2
    "qwen3-vl-8b": ((384, 384), 144),
    "qwen3-vl-30b-a3b": ((384, 384), 144),
    "qwen3.5-9b": ((384, 384), 144),
    "glm-4.1v-9b": ((336, 336), 144),  # (336/14)^2 patches, merged 2x2
    "gemma-3-4b-it": ((640, 480), 256),  # 896x896 SigLIP input, 4096 patches pooled 4x4
    "gemma-3-12b-it": ((640, 480), 256),
    "paligemma2-3b": ((640, 480), 256),  # 224x224, (224/14)^2
    "aya-vision-8b": ((364, 364), 169),  # one 364 tile (a square image needs no crops), pixel-shuffle 2
    # resized to a 1456 longest edge: 4x4 crops of 364 plus the global view, 169 tokens each (pixel-shuffle 2)
    "idefics3-8b": ((364, 364), 17 * 169),
    "internvl3.5-8b": ((448, 448), 256),
}
SDPA_UNSUPPORTED = {"paligemma2-3b"}  # transformers' Gemma 2 decoder has no SDPA path: eager
ONE_PROMPT: set[str] = set()


def _image(size, colour=(200, 40, 40)):
    return Image.new("RGB", size, colour)


def _build(alias):
    return from_config(
        config_from_dict(shrunk_config_dict(alias)), processor=synthetic_processor(alias), alias=alias,
        model_id=SPECS[alias].hub_id, device="cpu", dtype="fp32", synthetic_processor=True,
        attn="eager" if alias in SDPA_UNSUPPORTED else "sdpa",
    )


WITH_PROCESSOR = sorted(a for a, s in SPECS.items() if s.shipped()["processor"] is not None)


ANYRES = {"llava-next-7b", "llava-next-video-7b", "llava-onevision-7b"}


def test_stand_in_processors_cover_every_alias_whose_processor_builds_without_torchvision():
    assert set(WITH_PROCESSOR) == set(HAND_COUNTS) | ANYRES
    # the rest have processors that need torchvision (or are not written yet); each says why
    for alias in set(SPECS) - set(WITH_PROCESSOR):
        assert SPECS[alias].shipped().get("processor_note"), alias


def test_random_init_without_a_stand_in_processor_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # an empty cache: the processor is not there
    with pytest.raises(ModelNotFoundError, match="needs its processor files in the local cache .*needs torchvision"):
        load_model("lfm2-vl-1.6b", device="cpu", random_init=True)


@pytest.mark.parametrize("alias", WITH_PROCESSOR)
def test_random_init_builds_and_answers(alias):
    lm = _build(alias)
    assert lm.random_init and lm.synthetic_processor and lm.num_layers == TEXT_LAYERS
    assert lm.arch.family == SPECS[alias].family
    size = HAND_COUNTS.get(alias, ((400, 300), None))[0]
    if alias in ONE_PROMPT:
        inputs = lm.prepare("what is this", images=_image(size))
    else:
        inputs = lm.prepare(["what is this", "a longer question about the picture"], images=[_image(size), _image(size)])
    ids = inputs["input_ids"]
    placeholder = next(getattr(lm.config, a) for a in ("image_token_id", "image_token_index") if hasattr(lm.config, a))
    per_row = (ids == placeholder).sum(dim=1).tolist()
    if alias in HAND_COUNTS:
        assert per_row == [HAND_COUNTS[alias][1]] * len(per_row)
    else:  # AnyRes (LLaVA-NeXT, -NeXT-Video, -OneVision) counts depend on the grid; the model checks them below
        assert per_row[0] == per_row[1] > 576
    assert (inputs["attention_mask"][:, -1] == 1).all(), "padding must be on the left"
    # the forward pass raises if placeholders and image features disagree in number
    replies = lm.generate(inputs, max_new_tokens=2)
    assert len(replies) == len(per_row) and all(isinstance(r, str) for r in replies)


def test_a_decoder_without_sdpa_asks_for_eager():
    with pytest.raises(UsageError, match="use --attn eager"):
        from_config(config_from_dict(shrunk_config_dict("paligemma2-3b")), processor=None, device="cpu", attn="sdpa")


def test_random_init_dtype_is_honoured():
    lm = from_config(
        config_from_dict(shrunk_config_dict("llava-1.5-7b")), processor=synthetic_processor("llava-1.5-7b"),
        device="cpu", dtype="bf16",
    )
    assert lm.dtype == "bf16" and {p.dtype for p in lm.model.parameters()} == {torch.bfloat16}


def test_synthetic_tokenizer_keeps_the_real_special_ids():
    tok = synthetic_processor("qwen2-vl-2b").tokenizer
    assert tok.convert_tokens_to_ids(["<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|im_end|>"]) == [
        151655, 151656, 151652, 151645,
    ]
    tok = synthetic_processor("llava-1.5-7b").tokenizer
    assert tok("USER: <image>\nhello ASSISTANT:")["input_ids"][:3] == [1, 0, 32000]  # BOS, unknown word, image


def test_load_model_random_init_on_the_testbed_uses_its_real_processor():
    real = load_model("testbed", device="cpu")
    rand = load_model("testbed", device="cpu", random_init=True)
    assert rand.random_init and not rand.synthetic_processor
    assert rand.num_layers == real.num_layers
    real_w = dict(real.model.named_parameters())
    same_shape = all(p.shape == real_w[n].shape for n, p in rand.model.named_parameters())
    assert same_shape and set(real_w) == {n for n, _ in rand.model.named_parameters()}
    name = next(n for n in real_w if "embed_tokens" in n)
    assert not torch.equal(real_w[name], dict(rand.model.named_parameters())[name])
