"""One small record per supported model family (the only place a ``model_type`` string appears).

``get_arch(model_or_config)`` matches the exact ``config.model_type``; everything the engine,
the loader and the FLOPs model need to know about a family's layout is a field or method of
:class:`ArchRecord`, so supporting a new family is one new record here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vtwcli.errors import UnsupportedModelError


@dataclass(frozen=True)
class ArchRecord:
    """How to reach the parts of one multimodal family's Hugging Face model.

    ``image_token_attr``/``video_token_attr`` name the config attribute that holds the
    placeholder id (families spell it differently: LLaVA ``image_token_index``, Qwen
    ``image_token_id``); ``None`` means the family has no such input.
    """

    model_type: str
    family: str
    hf_class: str
    image_token_attr: str | None
    video_token_attr: str | None = None
    mrope: bool = False
    notes: str = ""

    # ---- config side
    def text_config(self, config):
        config = getattr(config, "config", config)
        return config.get_text_config(decoder=True)

    def num_layers(self, config) -> int:
        return int(self.text_config(config).num_hidden_layers)

    def hidden_size(self, config) -> int:
        return int(self.text_config(config).hidden_size)

    def image_token_id(self, config) -> int | None:
        config = getattr(config, "config", config)
        return _read_id(config, self.image_token_attr)

    def video_token_id(self, config) -> int | None:
        config = getattr(config, "config", config)
        return _read_id(config, self.video_token_attr)

    def placeholder_ids(self, config) -> tuple[int, ...]:
        """Every token id that stands for a vision feature in ``input_ids``."""
        ids = (self.image_token_id(config), self.video_token_id(config))
        return tuple(i for i in ids if i is not None)

    # ---- module side
    def base_model(self, model):
        """The multimodal base model (vision tower + projector + text decoder), i.e. ``model.model``."""
        return model.model if hasattr(model, "model") and hasattr(model.model, "language_model") else model

    def text_model(self, model):
        """The text decoder: embeddings, ``layers``, final norm, rotary embedding."""
        return self.base_model(model).language_model

    def decoder_layers(self, model):
        return self.text_model(model).layers

    def lm_head(self, model):
        return model.lm_head


def _read_id(config, attr: str | None) -> int | None:
    if attr is None:
        return None
    value = getattr(config, attr, None)
    return None if value is None else int(value)


_RECORDS: dict[str, ArchRecord] = {
    rec.model_type: rec
    for rec in (
        ArchRecord("llava", "LLaVA-1.5", "LlavaForConditionalGeneration", "image_token_index"),
        ArchRecord(
            "llava_next", "LLaVA-NeXT", "LlavaNextForConditionalGeneration", "image_token_index",
            notes="anyres: the number of vision tokens varies per image",
        ),
        ArchRecord(
            "qwen2_vl", "Qwen2-VL", "Qwen2VLForConditionalGeneration", "image_token_id", "video_token_id",
            mrope=True,
        ),
        ArchRecord(
            "qwen2_5_vl", "Qwen2.5-VL", "Qwen2_5_VLForConditionalGeneration", "image_token_id",
            "video_token_id", mrope=True,
        ),
        ArchRecord(
            "video_llava", "Video-LLaVA", "VideoLlavaForConditionalGeneration", "image_token_index",
            "video_token_index",
        ),
        ArchRecord("internvl", "InternVL", "InternVLForConditionalGeneration", "image_token_id"),
    )
}


def supported() -> list[ArchRecord]:
    """Every supported family, in a stable order (for `vtw models` and error messages)."""
    return list(_RECORDS.values())


def supported_text() -> str:
    return ", ".join(f"{r.family} ({r.model_type})" for r in _RECORDS.values())


def get_arch(model_or_config: Any) -> ArchRecord:
    """The record for a model, a config, or a ``model_type`` string."""
    if isinstance(model_or_config, str):
        model_type = model_or_config
    else:
        config = getattr(model_or_config, "config", model_or_config)
        model_type = getattr(config, "model_type", None)
    record = _RECORDS.get(model_type) if model_type is not None else None
    if record is None:
        what = f"model_type {model_type!r}" if model_type else f"{type(model_or_config).__name__} (no model_type)"
        raise UnsupportedModelError(
            f"{what} is not supported by vtw. Supported architectures: {supported_text()}. "
            "Load one of these (the *ForConditionalGeneration class), or open an issue to add a record in "
            "vtwcli/archs."
        )
    return record


__all__ = ["ArchRecord", "get_arch", "supported", "supported_text"]
