"""Short aliases for the models users know, and how any model name resolves.

A name resolves, in this order, to: the bundled testbed (``testbed``), an existing local
directory, a registered alias (``llava-1.5-7b``...), or a hub id (anything with a ``/``).
Anything else is an unknown alias, reported with the nearest registered names.

Each registered alias ships the public architecture facts of its model in
``vtwcli/models/configs/<alias>.json`` so ``random_init=True`` builds it without a download.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from vtwcli.errors import ModelNotFoundError

CONFIG_DIR = Path(__file__).parent / "configs"
TESTBED_DIR = Path(__file__).parent / "testbed"
TESTBED_ID = "vtwcli/testbed"
# What the testbed was trained on, said once by `vtw run` (anything else gets confident noise).
TESTBED_SCOPE = (
    "the testbed knows only its `shapes` task (72 px pictures of 1-4 red, green, blue or yellow circles, "
    "squares and triangles; questions on existence, position, colour and count in the benchmarks' "
    "wording) and answers anything else confidently and wrongly; see docs/testbed.md, or name a real "
    "model with --model"
)


@dataclass(frozen=True)
class ModelSpec:
    """One registered model: its alias, hub id and the shipped architecture facts."""

    alias: str
    hub_id: str
    family: str  # the ArchRecord.family its shipped config resolves to (checked by a test)
    profile: str  # file stem of its profile under profiles/ (calibrate merges into it)
    other_names: tuple[str, ...] = ()
    note: str | None = None

    @property
    def config_file(self) -> Path:
        return CONFIG_DIR / f"{self.alias}.json"

    def shipped(self) -> dict[str, Any]:
        return _read_shipped(self.alias)


# The paper's models; hub ids are the native-transformers ("-hf") conversions. The
# architecture itself comes from the shipped config (vtwcli.archs matches its model_type).
_SPECS: tuple[ModelSpec, ...] = (
    ModelSpec("llava-1.5-7b", "llava-hf/llava-1.5-7b-hf", "LLaVA-1.5", "llava15_7b", ("llava15-7b",)),
    ModelSpec("llava-1.5-13b", "llava-hf/llava-1.5-13b-hf", "LLaVA-1.5", "llava15_13b", ("llava15-13b",)),
    ModelSpec(
        "llava-next-7b", "llava-hf/llava-v1.6-vicuna-7b-hf", "LLaVA-NeXT", "llava_next_7b", ("llava-v1.6-vicuna-7b",)
    ),
    ModelSpec("qwen2-vl-2b", "Qwen/Qwen2-VL-2B-Instruct", "Qwen2-VL", "qwen2vl_2b"),
    ModelSpec("qwen2-vl-7b", "Qwen/Qwen2-VL-7B-Instruct", "Qwen2-VL", "qwen2vl_7b"),
    ModelSpec("qwen2.5-vl-3b", "Qwen/Qwen2.5-VL-3B-Instruct", "Qwen2.5-VL", "qwen25vl_3b"),
    ModelSpec(
        "internvl2-4b",
        "OpenGVLab/InternVL3-2B-hf",
        "InternVL",
        "internvl2_4b",
        ("internvl3-2b",),
        note=(
            "InternVL2-4B has no native transformers class (it needs trust_remote_code); "
            "this alias loads the nearest native checkpoint, InternVL3-2B-hf (28 layers)"
        ),
    ),
    ModelSpec("video-llava-7b", "LanguageBind/Video-LLaVA-7B-hf", "Video-LLaVA", "video_llava_7b"),
    # The families people run today (current checkpoints; configs typed from their config.json).
    ModelSpec("qwen3-vl-2b", "Qwen/Qwen3-VL-2B-Instruct", "Qwen3-VL", "qwen3vl_2b"),
    ModelSpec("qwen3-vl-8b", "Qwen/Qwen3-VL-8B-Instruct", "Qwen3-VL", "qwen3vl_8b"),
    ModelSpec("qwen3-vl-30b-a3b", "Qwen/Qwen3-VL-30B-A3B-Instruct", "Qwen3-VL-MoE", "qwen3vl_30b_a3b"),
    ModelSpec("qwen3.5-9b", "Qwen/Qwen3.5-9B", "Qwen3.5", "qwen35_9b"),
    ModelSpec("gemma-3-4b-it", "google/gemma-3-4b-it", "Gemma 3", "gemma3_4b", ("gemma3-4b",)),
    ModelSpec("gemma-3-12b-it", "google/gemma-3-12b-it", "Gemma 3", "gemma3_12b", ("gemma3-12b",)),
    ModelSpec(
        "llava-onevision-7b", "llava-hf/llava-onevision-qwen2-7b-ov-hf", "LLaVA-OneVision", "llava_onevision_7b",
        ("llava-ov-7b",),
    ),
    ModelSpec("llava-next-video-7b", "llava-hf/LLaVA-NeXT-Video-7B-hf", "LLaVA-NeXT-Video", "llava_next_video_7b"),
    ModelSpec("smolvlm2-2.2b", "HuggingFaceTB/SmolVLM2-2.2B-Instruct", "SmolVLM", "smolvlm2_2b"),
    ModelSpec("idefics3-8b", "HuggingFaceM4/Idefics3-8B-Llama3", "Idefics3", "idefics3_8b"),
    ModelSpec(
        "mistral-small-3.1-24b", "mistralai/Mistral-Small-3.1-24B-Instruct-2503", "Mistral 3", "mistral_small31_24b",
        ("mistral-small-3.1",),
    ),
    ModelSpec("glm-4.1v-9b", "zai-org/GLM-4.1V-9B-Thinking", "GLM-4.1V", "glm41v_9b", ("glm4.1v-9b",)),
    ModelSpec("internvl3.5-8b", "OpenGVLab/InternVL3_5-8B-HF", "InternVL", "internvl35_8b"),
    ModelSpec("paligemma2-3b", "google/paligemma2-3b-pt-224", "PaliGemma", "paligemma2_3b"),
    ModelSpec("aya-vision-8b", "CohereLabs/aya-vision-8b", "Aya Vision", "aya_vision_8b"),
    ModelSpec("lfm2-vl-1.6b", "LiquidAI/LFM2-VL-1.6B", "LFM2-VL", "lfm2vl_1b6"),
)

SPECS: dict[str, ModelSpec] = {s.alias: s for s in _SPECS}
_BY_NAME: dict[str, ModelSpec] = {}
for _s in _SPECS:
    for _n in (_s.alias, *_s.other_names):
        _BY_NAME[_n.lower()] = _s


@dataclass
class Resolved:
    """Where a model name points."""

    name: str  # what the user typed
    alias: str | None  # registered alias (or "testbed"), None for a bare hub id or directory
    model_id: str  # hub id, or TESTBED_ID, or the local directory's absolute path
    local_dir: Path | None = None  # set when the weights are read from a directory
    spec: ModelSpec | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_testbed(self) -> bool:
        return self.alias == "testbed"


def all_names() -> list[str]:
    return ["testbed", *sorted(_BY_NAME)]


def resolve(name: str | os.PathLike | None) -> Resolved:
    """Map a user's model name to a :class:`Resolved`; unknown aliases raise ModelNotFoundError."""
    raw = "testbed" if name is None else str(name).strip()
    if not raw:
        raise ModelNotFoundError("empty model name; pass an alias (see `vtw models`), a hub id or a directory")
    if raw.lower() == "testbed":
        return Resolved(raw, "testbed", TESTBED_ID, local_dir=TESTBED_DIR)
    path = Path(raw).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(
                f"directory {path} has no config.json, so it is not a saved model; "
                "save one with model.save_pretrained(dir) and processor.save_pretrained(dir)"
            )
        return Resolved(raw, None, str(path.resolve()), local_dir=path.resolve())
    spec = _BY_NAME.get(raw.lower())
    if spec is not None:
        return Resolved(raw, spec.alias, spec.hub_id, spec=spec)
    for s in _SPECS:  # a registered model named by its hub id keeps its alias
        if s.hub_id.lower() == raw.lower():
            return Resolved(raw, s.alias, s.hub_id, spec=s)
    if "/" in raw and not raw.startswith((".", "/", "~")) and raw.count("/") == 1:
        return Resolved(raw, None, raw)
    if "/" in raw or raw.startswith((".", "~")):
        raise ModelNotFoundError(f"directory {raw} does not exist; pass an existing model directory")
    near = difflib.get_close_matches(raw.lower(), all_names(), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(near)}? " if near else ""
    raise ModelNotFoundError(
        f"unknown model alias {raw!r}; {hint}run `vtw models` to list aliases, or pass a hub id "
        "(owner/name) or a local directory"
    )


@cache
def _read_shipped(alias: str) -> dict[str, Any]:
    path = CONFIG_DIR / f"{alias}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:  # only if the package was installed without its data files
        raise ModelNotFoundError(
            f"the shipped architecture config {path} is missing; reinstall vtwcli"
        ) from err


def shipped_config_dict(alias: str) -> dict[str, Any]:
    """The public config.json facts for a registered alias (a fresh copy)."""
    spec = SPECS.get(alias) or _BY_NAME.get(alias.lower())
    if spec is None:
        resolve(alias)  # raises the unknown-alias error with suggestions
        raise ModelNotFoundError(f"{alias!r} has no shipped architecture config; only registered aliases do")
    return json.loads(json.dumps(spec.shipped()["config"]))


def shipped_num_layers(alias: str) -> int:
    return int(shipped_config_dict(alias)["text_config"]["num_hidden_layers"])


def profile_stem(alias: str) -> str:
    """File stem of a model's profile under ``profiles/`` (the shipped one for registered aliases)."""
    spec = _BY_NAME.get(alias.lower())
    return spec.profile if spec is not None else alias
