"""Alias resolution and the shipped architecture configs (checked against published facts)."""

import json

import pytest

from vtwcli.archs import get_arch
from vtwcli.errors import ModelNotFoundError
from vtwcli.models import SPECS, resolve, shipped_config_dict
from vtwcli.models.registry import CONFIG_DIR, TESTBED_DIR, TESTBED_ID

# Published facts, copied by hand from the model cards / papers (not from our config files).
PUBLISHED = {
    # alias: (hub id, decoder layers, hidden size, parameters in billions as the hub pages list them)
    "llava-1.5-7b": ("llava-hf/llava-1.5-7b-hf", 32, 4096, 7.06),
    "llava-1.5-13b": ("llava-hf/llava-1.5-13b-hf", 40, 5120, 13.35),
    "llava-next-7b": ("llava-hf/llava-v1.6-vicuna-7b-hf", 32, 4096, 7.06),
    "qwen2-vl-2b": ("Qwen/Qwen2-VL-2B-Instruct", 28, 1536, 2.21),
    "qwen2-vl-7b": ("Qwen/Qwen2-VL-7B-Instruct", 28, 3584, 8.29),
    "qwen2.5-vl-3b": ("Qwen/Qwen2.5-VL-3B-Instruct", 36, 2048, 3.75),
    "internvl2-4b": ("OpenGVLab/InternVL3-2B-hf", 28, 1536, 2.09),
    "video-llava-7b": ("LanguageBind/Video-LLaVA-7B-hf", 32, 4096, 7.37),
    "qwen3-vl-2b": ("Qwen/Qwen3-VL-2B-Instruct", 28, 2048, 2.13),
    "qwen3-vl-8b": ("Qwen/Qwen3-VL-8B-Instruct", 36, 4096, 8.77),
    "qwen3-vl-30b-a3b": ("Qwen/Qwen3-VL-30B-A3B-Instruct", 48, 2048, 31.1),
    # Qwen3.5-9B: its hub size also counts the multi-token-prediction layer that transformers does not
    # build, so the check is on the text decoder alone (8.95B as llama.cpp reports its text model).
    "qwen3.5-9b": ("Qwen/Qwen3.5-9B", 32, 4096, 8.95),
    "gemma-3-4b-it": ("google/gemma-3-4b-it", 34, 2560, 4.30),
    "gemma-3-12b-it": ("google/gemma-3-12b-it", 48, 3840, 12.2),
    "llava-onevision-7b": ("llava-hf/llava-onevision-qwen2-7b-ov-hf", 28, 3584, 8.03),
    "llava-next-video-7b": ("llava-hf/LLaVA-NeXT-Video-7B-hf", 32, 4096, 7.06),
    "smolvlm2-2.2b": ("HuggingFaceTB/SmolVLM2-2.2B-Instruct", 24, 2048, 2.25),
    "idefics3-8b": ("HuggingFaceM4/Idefics3-8B-Llama3", 32, 4096, 8.46),
    "mistral-small-3.1-24b": ("mistralai/Mistral-Small-3.1-24B-Instruct-2503", 40, 5120, 24.0),
    "glm-4.1v-9b": ("zai-org/GLM-4.1V-9B-Thinking", 40, 4096, 10.3),
    "internvl3.5-8b": ("OpenGVLab/InternVL3_5-8B-HF", 36, 4096, 8.53),
    "paligemma2-3b": ("google/paligemma2-3b-pt-224", 26, 2304, 3.03),
    "aya-vision-8b": ("CohereLabs/aya-vision-8b", 32, 4096, 8.63),
    "lfm2-vl-1.6b": ("LiquidAI/LFM2-VL-1.6B", 16, 2048, 1.58),
}
TEXT_ONLY = {"qwen3.5-9b"}  # published size is the text decoder's (see above)
TOLERANCE = 0.01  # relative: the hub rounds sizes to 2-3 significant digits


def test_every_required_alias_is_registered():
    assert set(SPECS) == set(PUBLISHED)
    assert {p.stem for p in CONFIG_DIR.glob("*.json")} == set(PUBLISHED)


@pytest.mark.parametrize("name", ["llava-1.5-7b", "llava15-7b", "LLaVA-1.5-7B", "llava-hf/llava-1.5-7b-hf"])
def test_alias_spellings_resolve_to_the_same_checkpoint(name):
    r = resolve(name)
    assert (r.alias, r.model_id, r.local_dir) == ("llava-1.5-7b", "llava-hf/llava-1.5-7b-hf", None)


def test_default_and_testbed():
    for name in (None, "testbed", "TESTBED"):
        r = resolve(name)
        assert r.is_testbed and r.model_id == TESTBED_ID and r.local_dir == TESTBED_DIR


def test_unregistered_hub_id_passes_through():
    r = resolve("someone/some-vlm")
    assert (r.alias, r.model_id, r.local_dir) == (None, "someone/some-vlm", None)


def test_local_directory(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    r = resolve(str(tmp_path))
    assert r.alias is None and r.local_dir == tmp_path.resolve() and r.model_id == str(tmp_path.resolve())


def test_directory_without_config_is_refused(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        resolve(str(tmp_path))


def test_missing_directory_is_refused(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve(str(tmp_path / "nope" / "model"))


@pytest.mark.parametrize(
    "typo, nearest", [("llava-1.5-7", "llava-1.5-7b"), ("qwen2vl-2b", "qwen2-vl-2b"), ("testbd", "testbed")]
)
def test_unknown_alias_suggests_the_nearest(typo, nearest):
    with pytest.raises(ModelNotFoundError) as info:
        resolve(typo)
    msg = str(info.value)
    assert f"unknown model alias {typo!r}" in msg and nearest in msg and "vtw models" in msg


@pytest.mark.parametrize("alias", sorted(PUBLISHED))
def test_shipped_config_matches_published_facts(alias):
    hub_id, layers, hidden, _ = PUBLISHED[alias]
    data = json.loads((CONFIG_DIR / f"{alias}.json").read_text())
    assert data["alias"] == alias and data["hub_id"] == hub_id == SPECS[alias].hub_id
    text = data["config"]["text_config"]
    assert (text["num_hidden_layers"], text["hidden_size"]) == (layers, hidden)
    assert get_arch(data["config"]["model_type"]).family == SPECS[alias].family


def test_llava_vision_token_counts_follow_from_patching():
    for alias in ("llava-1.5-7b", "llava-1.5-13b", "video-llava-7b"):
        data = json.loads((CONFIG_DIR / f"{alias}.json").read_text())
        vis = data["config"]["vision_config"]
        size = vis.get("image_size", 224)  # CLIPVisionConfig's default, which Video-LLaVA relies on
        assert data["vision_tokens"]["per_image"] == (size // vis["patch_size"]) ** 2


@pytest.mark.parametrize("alias", sorted(PUBLISHED))
def test_parameter_count_matches_the_hub_page(alias):
    """Build each full-size model on the meta device (no memory) and count parameters."""
    import torch
    from transformers import AutoModelForImageTextToText

    from vtwcli.models import config_from_dict

    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config_from_dict(shipped_config_dict(alias)))
    text_only = alias in TEXT_ONLY
    billions = sum(p.numel() for n, p in model.named_parameters() if not (text_only and ".visual." in f".{n}")) / 1e9
    assert billions == pytest.approx(PUBLISHED[alias][3], rel=TOLERANCE)
