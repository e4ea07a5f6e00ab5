"""One small record per model family (the only place a ``model_type`` string appears).

``get_arch(model_or_config)`` matches the exact ``config.model_type``; everything the engine,
the loader and the FLOPs model need to know about a family's layout is a field or method of
:class:`ArchRecord`, so supporting a new family is one new record here.

A record is either *verified* (the conformance suite in tests/engine/conformance builds the
family tiny and checks the engine against an independent reference) or *refused* (``refusal``
says why, in one line; the engine raises :class:`UnsupportedModelError` with it). Listing:
:func:`supported` (verified), :func:`records` (all, for ``vtw models``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vtwcli.errors import UnsupportedModelError

VERIFIED = "verified"
REFUSED = "refused"


@dataclass(frozen=True)
class ArchRecord:
    """How to reach the parts of one multimodal family's Hugging Face model.

    ``image_token_attr``/``video_token_attr`` name the config attribute that holds the
    placeholder id (families spell it differently: LLaVA ``image_token_index``, Qwen
    ``image_token_id``); ``None`` means the family has no such input.

    Engine-facing fields (all optional; the defaults describe a plain LLaVA-style decoder):

    - ``text_model_attr``: the attribute of the base model that holds the text decoder
      (``language_model`` for most, ``text_model`` for Idefics3/SmolVLM).
    - ``deepstack_kwarg``: the text decoder's keyword argument holding one vision-feature
      injection per early layer (Qwen3-VL's DeepStack); injections into layers >= K are dropped.
    - ``block_input``/``block_values``/``block_rule``: where the model's own mask makes
      bidirectional blocks: the base model's keyword argument (token type ids), the values that
      mark a block member, and ``"runs"`` (each contiguous run is its own block: Gemma 3 image
      blocks) or ``"single"`` (every member is in one block: PaliGemma's prefix, Molmo2's image
      tokens). ``blocks_first_call_only``: the model builds blocks only for a prefill.
    - ``window_over_blocks``: on sliding layers the window also limits block attention
      (Gemma 3: AND(window, OR(causal, block))); False: a block ignores the window (PaliGemma 2:
      OR(AND(causal, window), block)).
    - ``per_token_kwargs`` / ``per_token_args``: per-layer keyword arguments / positional
      argument indices that hold one row per token and must be gathered with the hidden states
      (the rotary tables; Gemma 4's per-layer input is positional argument 1).
    - ``block_kinds``: the attention kinds (``full``, ``sliding``) the blocks apply to (Gemma 4:
      sliding layers only); ``block_config``: (text-config attribute, value) that switches the
      blocks on (Gemma 4: ``use_bidirectional_attention == "vision"``).
    - ``refusal``: why the engine refuses this family (``None``: verified).
    """

    model_type: str
    family: str
    hf_class: str
    image_token_attr: str | None
    video_token_attr: str | None = None
    mrope: bool = False
    notes: str = ""
    text_model_attr: str = "language_model"
    deepstack_kwarg: str | None = None
    block_input: str | None = None
    block_values: tuple[int, ...] = ()
    block_rule: str = "runs"
    blocks_first_call_only: bool = False
    window_over_blocks: bool = True
    per_token_kwargs: tuple[str, ...] = ("position_embeddings",)
    per_token_args: tuple[int, ...] = ()
    block_kinds: tuple[str, ...] = ("full", "sliding")
    block_config: tuple[str, Any] | None = None
    refusal: str | None = None
    # prompt styles besides the processor's chat template that reproduce the original code's
    # conversation (LLaVA-1.5/NeXT: "vicuna_v1", what lmms-eval's original llava model used)
    prompt_styles: tuple[str, ...] = ()

    # ---- status
    @property
    def status(self) -> str:
        return VERIFIED if self.refusal is None else REFUSED

    def ensure_supported(self) -> None:
        """Raise :class:`UnsupportedModelError` with the record's reason if it is refused."""
        if self.refusal is not None:
            raise UnsupportedModelError(f"vtw: {self.family} ({self.model_type}) is not supported: {self.refusal}")

    # ---- config side
    def text_config(self, config):
        config = getattr(config, "config", config)
        return config.get_text_config(decoder=True)

    def num_layers(self, config) -> int:
        return int(self.text_config(config).num_hidden_layers)

    def hidden_size(self, config) -> int:
        return int(self.text_config(config).hidden_size)

    def layer_types(self, config) -> list[str]:
        """Each decoder layer's type as the model names it (``full_attention`` when the config
        lists none)."""
        text = self.text_config(config)
        n = int(text.num_hidden_layers)
        types = list(getattr(text, "layer_types", None) or [])
        return types[:n] if len(types) >= n else ["full_attention"] * n

    def image_token_id(self, config) -> int | None:
        config = getattr(config, "config", config)
        return _read_id(config, self.image_token_attr)

    def video_token_id(self, config) -> int | None:
        config = getattr(config, "config", config)
        return _read_id(config, self.video_token_attr)

    def placeholder_ids(self, config) -> tuple[int, ...]:
        """Every token id that stands for a vision feature in ``input_ids``."""
        ids = (self.image_token_id(config), self.video_token_id(config))
        return tuple(dict.fromkeys(i for i in ids if i is not None))

    # ---- module side
    def base_model(self, model):
        """The multimodal base model (vision tower + projector + text decoder), i.e. ``model.model``."""
        inner = getattr(model, "model", None)
        return inner if inner is not None and hasattr(inner, self.text_model_attr) else model

    def text_model(self, model):
        """The text decoder: embeddings, ``layers``, final norm, rotary embedding."""
        return getattr(self.base_model(model), self.text_model_attr)

    def decoder_layers(self, model):
        return self.text_model(model).layers

    def lm_head(self, model):
        return model.lm_head

    def blocks(self, base_kwargs: dict, first_call: bool, config=None):
        """The model's own bidirectional block ids ([B, L] long, -1 = no block) for one call of
        the base model, or None."""
        import torch

        if self.block_input is None or (self.blocks_first_call_only and not first_call):
            return None
        if self.block_config is not None and config is not None:
            attr, value = self.block_config
            if getattr(self.text_config(config), attr, None) != value:
                return None
        types = base_kwargs.get(self.block_input)
        if types is None:
            return None
        member = torch.zeros_like(types, dtype=torch.bool)
        for v in self.block_values:
            member |= types == v
        if self.block_rule == "single":
            return torch.where(member, 0, -1)
        starts = member & ~torch.nn.functional.pad(member, (1, 0))[:, :-1]
        groups = starts.long().cumsum(1) - 1
        return torch.where(member, groups, -1)


def _read_id(config, attr: str | None) -> int | None:
    if attr is None:
        return None
    value = getattr(config, attr, None)
    return None if value is None else int(value)


_LLAMA4_REFUSAL = (
    "its forward fails inside transformers 5.24 itself, so withdrawal cannot be verified against the "
    "unmodified model (once it runs: its rotary input is one complex tensor and its NoPE layers' attention "
    "temperature depends on positions, both of which the engine would have to carry)"
)

_RECORDS: dict[str, ArchRecord] = {
    rec.model_type: rec
    for rec in (
        ArchRecord("llava", "LLaVA-1.5", "LlavaForConditionalGeneration", "image_token_index",
                   prompt_styles=("vicuna_v1",)),
        ArchRecord(
            "llava_next", "LLaVA-NeXT", "LlavaNextForConditionalGeneration", "image_token_index",
            notes="anyres: the number of vision tokens varies per image", prompt_styles=("vicuna_v1",),
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
        # ---- current families
        ArchRecord(
            "qwen3_vl", "Qwen3-VL", "Qwen3VLForConditionalGeneration", "image_token_id", "video_token_id",
            mrope=True, deepstack_kwarg="deepstack_visual_embeds",
            notes="DeepStack: vision features are added to the vision rows after the first layers; "
            "injections into layers >= K are dropped",
        ),
        ArchRecord(
            "qwen3_vl_moe", "Qwen3-VL-MoE", "Qwen3VLMoeForConditionalGeneration", "image_token_id",
            "video_token_id", mrope=True, deepstack_kwarg="deepstack_visual_embeds",
            notes="DeepStack as Qwen3-VL; MoE decoder",
        ),
        ArchRecord(
            "qwen3_5", "Qwen3.5", "Qwen3_5ForConditionalGeneration", "image_token_id", "video_token_id",
            mrope=True,
            notes="hybrid decoder: gated-delta-net linear-attention layers run on the kept tokens only",
        ),
        ArchRecord(
            "qwen3_5_moe", "Qwen3.5-MoE", "Qwen3_5MoeForConditionalGeneration", "image_token_id",
            "video_token_id", mrope=True,
            notes="hybrid decoder as Qwen3.5; MoE",
        ),
        ArchRecord(
            "gemma3", "Gemma 3", "Gemma3ForConditionalGeneration", "image_token_index",
            block_input="token_type_ids", block_values=(1,), block_rule="runs",
            notes="sliding-window layers (the window counts original positions); bidirectional image blocks",
        ),
        ArchRecord(
            "gemma4", "Gemma 4", "Gemma4ForConditionalGeneration", "image_token_id", "video_token_id",
            block_input="mm_token_type_ids", block_values=(1, 2), block_rule="runs", block_kinds=("sliding",),
            block_config=("use_bidirectional_attention", "vision"), per_token_args=(1,),
            notes="per-layer inputs gathered with the hidden states; KV-shared layers >= K whose producer is < K "
            "have the withdrawn columns of the shared keys masked; vision blocks on sliding layers only",
        ),
        ArchRecord(
            "llava_onevision", "LLaVA-OneVision", "LlavaOnevisionForConditionalGeneration", "image_token_index",
            "video_token_index", notes="anyres tokens with row newlines; video tokens",
        ),
        ArchRecord(
            "llava_next_video", "LLaVA-NeXT-Video", "LlavaNextVideoForConditionalGeneration",
            "image_token_index", "video_token_index", notes="anyres image tokens and pooled video tokens",
        ),
        ArchRecord(
            "idefics3", "Idefics3", "Idefics3ForConditionalGeneration", "image_token_id",
            text_model_attr="text_model", notes="crops with marker tokens; the decoder is model.text_model",
        ),
        ArchRecord(
            "smolvlm", "SmolVLM", "SmolVLMForConditionalGeneration", "image_token_id",
            text_model_attr="text_model", notes="crops with marker tokens; the decoder is model.text_model",
        ),
        ArchRecord(
            "mistral3", "Mistral 3", "Mistral3ForConditionalGeneration", "image_token_index",
            notes="Pixtral layout: [IMG] rows separated by [IMG_BREAK] (text, kept)",
        ),
        ArchRecord(
            "glm4v", "GLM-4.1V", "Glm4vForConditionalGeneration", "image_token_id", "video_token_id",
            mrope=True, notes="3D rotary positions",
        ),
        ArchRecord(
            "paligemma", "PaliGemma", "PaliGemmaForConditionalGeneration", "image_token_index",
            block_input="token_type_ids", block_values=(0,), block_rule="single", blocks_first_call_only=True,
            window_over_blocks=False,
            notes="prefix-LM: the text prefix that remains stays bidirectional after withdrawal",
        ),
        ArchRecord(
            "aya_vision", "Aya Vision", "AyaVisionForConditionalGeneration", "image_token_index",
            notes="Cohere 2 decoder with sliding-window layers",
        ),
        ArchRecord(
            "lfm2_vl", "LFM2-VL", "Lfm2VlForConditionalGeneration", "image_token_id",
            notes="hybrid decoder: short-convolution layers run on the kept tokens only",
        ),
        ArchRecord(
            "kimi_k25", "Kimi-K2.5", "Kimi_K25ForConditionalGeneration", "image_token_id", "video_token_id",
            notes="MoE (DeepSeek-V3) decoder",
        ),
        ArchRecord(
            "molmo2", "Molmo2", "Molmo2ForConditionalGeneration", "image_token_id", "video_token_id",
            block_input="mm_token_type_ids", block_values=(1,), block_rule="single", blocks_first_call_only=True,
            notes="pooled image tokens (one bidirectional block at prefill); layers alternate two rotary tables, "
            "each gathered at the kept rows",
        ),
        ArchRecord(
            "llama4", "Llama 4", "Llama4ForConditionalGeneration", "image_token_index", refusal=_LLAMA4_REFUSAL,
        ),
    )
}


def records() -> list[ArchRecord]:
    """Every known family, verified and refused, in a stable order (for `vtw models`)."""
    return list(_RECORDS.values())


def supported() -> list[ArchRecord]:
    """Every verified family, in a stable order (for error messages)."""
    return [r for r in _RECORDS.values() if r.refusal is None]


def supported_text() -> str:
    return ", ".join(f"{r.family} ({r.model_type})" for r in supported())


def get_arch(model_or_config: Any) -> ArchRecord:
    """The record for a model, a config, or a ``model_type`` string (refused records included:
    check ``record.status`` or call ``record.ensure_supported()``)."""
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


__all__ = ["REFUSED", "VERIFIED", "ArchRecord", "get_arch", "records", "supported", "supported_text"]
