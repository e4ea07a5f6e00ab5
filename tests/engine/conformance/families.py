"""Tiny random models of every family the conformance suite checks, with matching inputs.

Each family is built from its own transformers config class (sizes shrunk, special token ids
moved into a 128-token vocabulary) and its inputs are laid out as its processor would: the
placeholder repeated once per vision feature the model itself produces (the count is asked of
the model's feature extractor), with the family's markers around it. ``FAMILIES`` maps a
model_type to a :class:`Family`; a family whose classes the installed transformers lacks is
reported by :func:`missing` (the suite skips it with that reason).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import torch
import transformers

VOCAB = 128
PAD_ID = 0
IMAGE_ID = VOCAB - 1
VIDEO_ID = VOCAB - 2
START_ID = VOCAB - 3
END_ID = VOCAB - 4
BREAK_ID = VOCAB - 5
TEXT_HIGH = VOCAB - 16  # text tokens are drawn below this

TEXT = dict(
    vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
    head_dim=16, max_position_embeddings=512, pad_token_id=PAD_ID, bos_token_id=1, eos_token_id=2,
    tie_word_embeddings=False,
)
# the sliding window is shorter than every prompt, so it matters in prefill and decode
WINDOW = 12


@dataclass
class Family:
    model_type: str
    config_class: str
    model_class: str
    make_config: Callable  # (num_layers) -> config
    make_row: Callable  # (model, variant, generator) -> (segments of ids, extra inputs)
    layer_types: Callable | None = None  # (num_layers) -> list of layer types, or None
    min_k: int = 1  # the smallest K the family allows (its first attention layer + 1)
    extra_text: dict = field(default_factory=dict)
    deepstack: bool = False
    mixers: tuple[str, ...] = ()  # attribute names of non-attention mixers in a decoder layer
    no_attn: dict = field(default_factory=dict)  # attention implementation -> why the family cannot run it
    # sub-configs kept on eager attention whatever the decoder runs: Molmo2's image pooling gives
    # logits 1e-3 apart under sdpa and eager in transformers itself, which the eager reference
    # would blame on the engine; the decoder (what the engine touches) still runs `attn`
    eager_parts: tuple[str, ...] = ()


def missing(fam: Family) -> str | None:
    for name in (fam.config_class, fam.model_class):
        if not hasattr(transformers, name):
            return f"transformers {transformers.__version__} has no {name}"
    return None


def _cls(name):
    return getattr(transformers, name)


# ------------------------------------------------------------------ rows (inputs per variant)
def _count(features):
    if isinstance(features, (list, tuple)):
        return [int(f.shape[-2]) if f.dim() == 3 else int(f.shape[0]) for f in features]
    if features.dim() == 3:
        return [int(features.shape[1])] * int(features.shape[0])
    return [int(features.shape[0])]


def _pooled(out):
    return getattr(out, "pooler_output", None) if not isinstance(out, (torch.Tensor, list, tuple)) else out


def _row_kimi(model, variant, gen):
    grids = [(1, 4, 8), (1, 6, 8), (1, 8, 8), (1, 4, 4)]
    t, gh, gw = grids[variant % len(grids)]
    p = model.config.vision_config.patch_size
    pix = torch.randn(t * gh * gw, 3, p, p, generator=gen)
    n = t * gh * gw // 4
    return [[START_ID] + [IMAGE_ID] * n + [END_ID]], {"pixel_values": [pix], "image_grid_thw": [torch.tensor([[t, gh, gw]])]}


def _row_qwen(model, variant, gen, merge=2):
    grids = [(1, 4, 8), (1, 6, 8), (1, 8, 8), (1, 4, 4)]
    t, gh, gw = grids[variant % len(grids)]
    vc = model.config.vision_config
    patch = vc.patch_size if isinstance(vc.patch_size, int) else vc.patch_size[0]
    tps = getattr(vc, "temporal_patch_size", 2)
    tps = tps if isinstance(tps, int) else tps[0]
    patch_dim = getattr(vc, "in_channels", 3) * tps * patch**2
    pix = torch.randn(t * gh * gw, patch_dim, generator=gen)
    n = t * gh * gw // merge**2
    return [[START_ID] + [IMAGE_ID] * n + [END_ID]], {"pixel_values": [pix], "image_grid_thw": [torch.tensor([[t, gh, gw]])]}


def _row_llava(model, variant, gen, markers=False):
    size = model.config.vision_config.image_size
    pix = torch.randn(1, 3, size, size, generator=gen)
    per = _count(_pooled(model.model.get_image_features(pixel_values=pix)))
    seg = [IMAGE_ID] * per[0]
    return [[START_ID] + seg + [END_ID] if markers else seg], {"pixel_values": [pix]}


def _row_anyres(model, variant, gen):
    sizes = [(28, 56), (56, 56), (56, 28), (40, 40)]
    h, w = sizes[variant % len(sizes)]
    tile = model.config.vision_config.image_size
    from transformers.models.llava_next.modeling_llava_next import image_size_to_num_patches

    n_patches = image_size_to_num_patches((h, w), model.config.image_grid_pinpoints, tile)
    pix = torch.randn(1, n_patches, 3, tile, tile, generator=gen)
    image_sizes = torch.tensor([[h, w]])
    out = model.model.get_image_features(pixel_values=pix, image_sizes=image_sizes)
    per = _count(_pooled(out))
    return [[IMAGE_ID] * sum(per)], {"pixel_values": [pix], "image_sizes": [image_sizes]}


def _row_mistral3(model, variant, gen):
    # Pixtral: image sizes vary; [IMG] rows are separated by [IMG_BREAK] (text) and end with [IMG_END]
    sizes = [(28, 28), (28, 42), (42, 28), (42, 42)]
    h, w = sizes[variant % len(sizes)]
    pix = torch.randn(1, 3, h, w, generator=gen)
    image_sizes = torch.tensor([[h, w]])
    out = model.model.get_image_features(pixel_values=pix, image_sizes=image_sizes)
    n = sum(_count(_pooled(out)))
    patch = model.config.vision_config.patch_size * model.config.spatial_merge_size
    cols = w // patch
    rows = n // cols
    seg = []
    for r in range(rows):
        seg += [IMAGE_ID] * cols + ([BREAK_ID] if r < rows - 1 else [END_ID])
    return [seg], {"pixel_values": [pix], "image_sizes": [image_sizes]}


def _row_images(model, variant, gen, per_image_markers=True):
    """One or two images of the model's tile size (Gemma 3, PaliGemma, Aya Vision)."""
    n_img = 1 + variant % 2
    size = model.config.vision_config.image_size
    pix = torch.randn(n_img, 3, size, size, generator=gen)
    feats = _pooled(model.model.get_image_features(pixel_values=pix))
    feats = feats if isinstance(feats, (list, tuple)) else [feats]
    # one row per placeholder, whatever layout this transformers release returns them in
    hidden = model.config.get_text_config(decoder=True).hidden_size
    per = [sum(f.numel() for f in feats) // hidden // n_img] * n_img
    segs = [([START_ID] if per_image_markers else []) + [IMAGE_ID] * c + ([END_ID] if per_image_markers else [])
            for c in per]
    return segs, {"pixel_values": [pix]}


def _row_idefics(model, variant, gen):
    """Idefics3 / SmolVLM: an image split into 1..3 crops, each wrapped in marker tokens."""
    crops = 1 + variant % 3
    size = model.config.vision_config.image_size
    pix = torch.randn(1, crops, 3, size, size, generator=gen)
    mask = torch.ones(1, crops, size, size, dtype=torch.bool)
    out = model.model.get_image_features(pixel_values=pix, pixel_attention_mask=mask)
    per = _count(_pooled(out))
    n = sum(per) // crops
    seg = []
    for _ in range(crops):
        seg += [START_ID] + [IMAGE_ID] * n + [END_ID]
    return [seg], {"pixel_values": [pix], "pixel_attention_mask": [mask]}


def _row_gemma4(model, variant, gen):
    """Gemma 4: one or two images of 8x8 patches (with their patch coordinates), pooled 2x2."""
    n_img = 1 + variant % 2
    p = model.config.vision_config.patch_size
    gh = gw = 8
    pix = torch.randn(n_img, gh * gw, 3 * p * p, generator=gen)
    ys, xs = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    pos = torch.stack([xs.flatten(), ys.flatten()], -1)[None].expand(n_img, -1, -1).contiguous()
    out = model.model.get_image_features(pixel_values=pix, image_position_ids=pos)
    per = _count(_pooled(out))
    return [[START_ID] + [IMAGE_ID] * c + [END_ID] for c in per], {"pixel_values": [pix], "image_position_ids": [pos]}


def _row_molmo2(model, variant, gen):
    """Molmo2: 1 or 2 crops of 8x8 patches, each pooled 2x2 into 16 tokens (low-res, then high-res)."""
    crops = 1 + variant % 2
    pix = torch.randn(crops, 64, 147, generator=gen)
    idx = [[c * 64 + (2 * i + di) * 8 + (2 * j + dj) for di in (0, 1) for dj in (0, 1)]
           for c in range(crops) for i in range(4) for j in range(4)]
    pool = torch.tensor(idx)
    grids = torch.tensor([[4, 4, 4, 4] if crops == 2 else [4, 4, 0, 0]])
    out = model.model.get_image_features(pixel_values=pix, image_token_pooling=pool, image_grids=grids)
    n = sum(_count(_pooled(out)))
    return [[START_ID] + [IMAGE_ID] * n + [END_ID]], {"pixel_values": [pix], "image_token_pooling": [pool],
                                                     "image_grids": [grids]}


def _row_lfm2_vl(model, variant, gen):
    """LFM2-VL (SigLIP2 NaFlex): patch grids of different shapes, padded to the most patches."""
    grids = [(4, 8), (8, 8), (8, 4), (4, 4)]
    gh, gw = grids[variant % len(grids)]
    p = model.config.vision_config.patch_size
    most = 64
    pix = torch.zeros(1, most, 3 * p * p)
    pix[0, : gh * gw] = torch.randn(gh * gw, 3 * p * p, generator=gen)
    mask = torch.zeros(1, most, dtype=torch.bool)
    mask[0, : gh * gw] = True
    shapes = torch.tensor([[gh, gw]])
    n = (gh // 2) * (gw // 2)
    return [[START_ID] + [IMAGE_ID] * n + [END_ID]], {
        "pixel_values": [pix], "pixel_attention_mask": [mask], "spatial_shapes": [shapes]}


# ------------------------------------------------------------------ configs
def _qwen3_vl_config(num_layers, moe=False):
    text = dict(TEXT, num_hidden_layers=num_layers,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3],
                                 "mrope_interleaved": True})
    if moe:
        text.update(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, decoder_sparse_step=1)
    cls = _cls("Qwen3VLMoeConfig" if moe else "Qwen3VLConfig")
    return cls(
        text_config=text,
        vision_config=dict(depth=3, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                           patch_size=4, spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=64,
                           deepstack_visual_indexes=[0, 1, 2]),
        image_token_id=IMAGE_ID, video_token_id=VIDEO_ID, vision_start_token_id=START_ID,
        vision_end_token_id=END_ID, tie_word_embeddings=False,
    )


def _qwen3_5_types(num_layers):
    return [("full_attention" if (i + 1) % 2 == 0 else "linear_attention") for i in range(num_layers)]


def _qwen3_5_config(num_layers, moe=False):
    text = dict(TEXT, num_hidden_layers=num_layers, layer_types=_qwen3_5_types(num_layers),
                linear_conv_kernel_dim=4, linear_key_head_dim=8, linear_value_head_dim=8, linear_num_key_heads=2,
                linear_num_value_heads=4,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1],
                                 "mrope_interleaved": True, "partial_rotary_factor": 0.5})
    if moe:
        text.update(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, shared_expert_intermediate_size=32)
    cls = _cls("Qwen3_5MoeConfig" if moe else "Qwen3_5Config")
    return cls(
        text_config=text,
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                           patch_size=4, spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=64),
        image_token_id=IMAGE_ID, video_token_id=VIDEO_ID, vision_start_token_id=START_ID,
        vision_end_token_id=END_ID, tie_word_embeddings=False,
    )


def _glm4v_config(num_layers):
    text = dict(TEXT, num_hidden_layers=num_layers,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1],
                                 "partial_rotary_factor": 0.5})
    text.pop("head_dim", None)
    text.pop("bos_token_id", None)
    text.pop("eos_token_id", None)
    text.pop("tie_word_embeddings", None)
    return _cls("Glm4vConfig")(
        text_config=text,
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                           patch_size=4, spatial_merge_size=2, temporal_patch_size=2, image_size=16),
        image_token_id=IMAGE_ID, video_token_id=VIDEO_ID, image_start_token_id=START_ID, image_end_token_id=END_ID,
        video_start_token_id=START_ID - 10, video_end_token_id=END_ID - 10, tie_word_embeddings=False,
    )


def _clip(image_size, patch=14):
    return dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, image_size=image_size, patch_size=patch, projection_dim=32)


def _onevision_config(num_layers):
    return _cls("LlavaOnevisionConfig")(
        text_config=dict(TEXT, model_type="qwen2", num_hidden_layers=num_layers),
        vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=2, image_size=28, patch_size=14),
        image_token_index=IMAGE_ID, video_token_index=VIDEO_ID, image_grid_pinpoints=[[28, 56], [56, 28], [56, 56]],
        vision_feature_layer=-1, tie_word_embeddings=False,
    )


def _next_video_config(num_layers):
    return _cls("LlavaNextVideoConfig")(
        text_config=dict(TEXT, model_type="llama", num_hidden_layers=num_layers),
        vision_config=_clip(28),
        image_token_index=IMAGE_ID, video_token_index=VIDEO_ID, image_grid_pinpoints=[[28, 56], [56, 28], [56, 56]],
        vision_feature_layer=-1, spatial_pool_stride=2, tie_word_embeddings=False,
    )


def _mistral3_config(num_layers):
    return _cls("Mistral3Config")(
        text_config=dict(TEXT, model_type="mistral", num_hidden_layers=num_layers, sliding_window=None),
        vision_config=dict(model_type="pixtral", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, image_size=42, patch_size=7, head_dim=16),
        image_token_index=IMAGE_ID, spatial_merge_size=2, vision_feature_layer=-1, tie_word_embeddings=False,
    )


def _kimi_config(num_layers):
    text = dict(TEXT, model_type="deepseek_v3", num_hidden_layers=num_layers, n_routed_experts=4, num_key_value_heads=4,
                num_experts_per_tok=2, moe_intermediate_size=32, n_shared_experts=1, first_k_dense_replace=1,
                kv_lora_rank=16, q_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=16,
                n_group=1, topk_group=1)
    text.pop("head_dim")
    return _cls("Kimi_K25Config")(
        text_config=text,
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           patch_size=4, pos_emb_height=16, pos_emb_width=16, pos_emb_time=2,
                           merge_kernel_size=[2, 2]),
        image_token_id=IMAGE_ID, video_token_id=VIDEO_ID, vision_start_token_id=START_ID,
        vision_end_token_id=END_ID, projection_hidden_size=32, tie_word_embeddings=False,
    )


def _siglip(image_size, patch=7, model_type="siglip_vision_model"):
    return dict(model_type=model_type, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, image_size=image_size, patch_size=patch)


def _gemma3_types(num_layers):
    pattern = ["sliding_attention", "sliding_attention", "full_attention"]
    return [pattern[i % 3] for i in range(num_layers)]


def _gemma3_config(num_layers):
    text = dict(TEXT, model_type="gemma3_text", num_hidden_layers=num_layers, layer_types=_gemma3_types(num_layers),
                sliding_window=WINDOW, query_pre_attn_scalar=16)
    return _cls("Gemma3Config")(
        text_config=text, vision_config=_siglip(56), mm_tokens_per_image=16,
        image_token_index=IMAGE_ID, boi_token_index=START_ID, eoi_token_index=END_ID, tie_word_embeddings=False,
    )


def _paligemma_config(num_layers):
    # PaliGemma 2: a Gemma 2 decoder, sliding-window layers interleaved with global ones
    text = dict(TEXT, model_type="gemma2", num_hidden_layers=num_layers, sliding_window=WINDOW,
                query_pre_attn_scalar=16,
                layer_types=["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(num_layers)])
    return _cls("PaliGemmaConfig")(
        text_config=text, vision_config=_siglip(28), image_token_index=IMAGE_ID, projection_dim=64,
        vocab_size=VOCAB, hidden_size=64, tie_word_embeddings=False,
    )


def _aya_config(num_layers):
    text = dict(TEXT, model_type="cohere2", num_hidden_layers=num_layers, sliding_window=WINDOW,
                layer_types=["sliding_attention", "sliding_attention", "sliding_attention", "full_attention"][:num_layers])
    return _cls("AyaVisionConfig")(
        text_config=text, vision_config=_siglip(56), image_token_index=IMAGE_ID, downsample_factor=2,
        vision_feature_select_strategy="full", tie_word_embeddings=False,
    )


def _idefics_config(num_layers, smol=False):
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=56,
                  patch_size=7)
    cls = _cls("SmolVLMConfig" if smol else "Idefics3Config")
    return cls(
        text_config=dict(TEXT, model_type="llama", num_hidden_layers=num_layers),
        vision_config=vision, image_token_id=IMAGE_ID, scale_factor=2, tie_word_embeddings=False,
    )


def _gemma4_types(num_layers):
    return ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(num_layers)]


def _gemma4_config(num_layers):
    # the last layer reuses layer 1's keys (KV sharing); per-layer inputs; vision blocks on sliding layers
    text = dict(TEXT, num_hidden_layers=num_layers, sliding_window=WINDOW, layer_types=_gemma4_types(num_layers),
                hidden_size_per_layer_input=8, vocab_size_per_layer_input=VOCAB, num_kv_shared_layers=1,
                use_bidirectional_attention="vision", global_head_dim=16)
    return _cls("Gemma4Config")(
        text_config=text,
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           num_key_value_heads=2, head_dim=16, patch_size=4, pooling_kernel_size=2,
                           position_embedding_size=64),
        audio_config=None, image_token_id=IMAGE_ID, video_token_id=VIDEO_ID, boi_token_id=START_ID,
        eoi_token_id=END_ID, audio_token_id=BREAK_ID, boa_token_id=BREAK_ID - 1, eoa_token_index=BREAK_ID - 2,
        tie_word_embeddings=False,
    )


def _molmo2_config(num_layers):
    # layers 1 and 3 use the scaled rotary table, 0 and 2 the unscaled one
    text = dict(TEXT, num_hidden_layers=num_layers, additional_vocab_size=0,
                rope_scaling_layers=list(range(1, num_layers, 2)),
                rope_parameters={"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0})
    for key in ("bos_token_id", "eos_token_id", "tie_word_embeddings"):
        text.pop(key)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=2, head_dim=16, image_size=[56, 56], patch_size=7, num_position_embeddings=64,
                  vision_feature_layer=[-1])
    adapter = dict(hidden_size=32, num_attention_heads=2, num_key_value_heads=2, head_dim=16, intermediate_size=64,
                   text_hidden_size=64, vision_feature_layer=[-1])
    return _cls("Molmo2Config")(
        text_config=text, vision_config=vision, adapter_config=adapter, image_patch_id=IMAGE_ID,
        image_start_token_id=START_ID, image_end_token_id=END_ID, low_res_image_start_token_id=BREAK_ID,
        frame_start_token_id=BREAK_ID - 1, frame_end_token_id=BREAK_ID - 2, tie_word_embeddings=False,
    )


def _lfm2_types(num_layers):
    return ["full_attention" if i % 2 == 0 else "conv" for i in range(num_layers)]


def _lfm2_vl_config(num_layers):
    text = dict(TEXT, model_type="lfm2", num_hidden_layers=num_layers, layer_types=_lfm2_types(num_layers),
                conv_L_cache=3, block_auto_adjust_ff_dim=False)
    text.pop("head_dim")
    return _cls("Lfm2VlConfig")(
        text_config=text,
        vision_config=dict(model_type="siglip2_vision_model", hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=2, patch_size=4, num_patches=64),
        image_token_id=IMAGE_ID, downsample_factor=2, projector_hidden_size=32, tie_word_embeddings=False,
    )


FAMILIES: dict[str, Family] = {}


def _add(*fams):
    for f in fams:
        FAMILIES[f.model_type] = f


_add(
    Family("qwen3_vl", "Qwen3VLConfig", "Qwen3VLForConditionalGeneration", _qwen3_vl_config, _row_qwen,
           deepstack=True),
    Family("qwen3_vl_moe", "Qwen3VLMoeConfig", "Qwen3VLMoeForConditionalGeneration",
           lambda n: _qwen3_vl_config(n, moe=True), _row_qwen, deepstack=True),
    Family("qwen3_5", "Qwen3_5Config", "Qwen3_5ForConditionalGeneration", _qwen3_5_config, _row_qwen,
           layer_types=_qwen3_5_types, min_k=2, mixers=("linear_attn",)),
    Family("qwen3_5_moe", "Qwen3_5MoeConfig", "Qwen3_5MoeForConditionalGeneration",
           lambda n: _qwen3_5_config(n, moe=True), _row_qwen, layer_types=_qwen3_5_types, min_k=2,
           mixers=("linear_attn",)),
    Family("glm4v", "Glm4vConfig", "Glm4vForConditionalGeneration", _glm4v_config, _row_qwen),
    Family("llava_onevision", "LlavaOnevisionConfig", "LlavaOnevisionForConditionalGeneration", _onevision_config,
           _row_anyres),
    Family("llava_next_video", "LlavaNextVideoConfig", "LlavaNextVideoForConditionalGeneration", _next_video_config,
           _row_anyres),
    Family("mistral3", "Mistral3Config", "Mistral3ForConditionalGeneration", _mistral3_config, _row_mistral3),
    Family("kimi_k25", "Kimi_K25Config", "Kimi_K25ForConditionalGeneration", _kimi_config, _row_kimi),
    Family("gemma3", "Gemma3Config", "Gemma3ForConditionalGeneration", _gemma3_config, _row_images,
           layer_types=_gemma3_types),
    Family("paligemma", "PaliGemmaConfig", "PaliGemmaForConditionalGeneration", _paligemma_config,
           lambda m, v, g: _row_images(m, v, g, per_image_markers=False),
           no_attn={"sdpa": "transformers' Gemma 2 decoder (PaliGemma 2) has no sdpa implementation"}),
    Family("aya_vision", "AyaVisionConfig", "AyaVisionForConditionalGeneration", _aya_config,
           lambda m, v, g: _row_images(m, v, g)),
    Family("idefics3", "Idefics3Config", "Idefics3ForConditionalGeneration", _idefics_config, _row_idefics),
    Family("smolvlm", "SmolVLMConfig", "SmolVLMForConditionalGeneration", lambda n: _idefics_config(n, smol=True),
           _row_idefics),
    Family("gemma4", "Gemma4Config", "Gemma4ForConditionalGeneration", _gemma4_config, _row_gemma4,
           layer_types=_gemma4_types),
    Family("molmo2", "Molmo2Config", "Molmo2ForConditionalGeneration", _molmo2_config, _row_molmo2,
           eager_parts=("vision_config", "adapter_config")),
    Family("lfm2_vl", "Lfm2VlConfig", "Lfm2VlForConditionalGeneration", _lfm2_vl_config, _row_lfm2_vl,
           layer_types=_lfm2_types, mixers=("conv",)),
)


# ------------------------------------------------------------------ building
def build(model_type: str, attn: str = "eager", num_layers: int = 4, seed: int = 0, dtype=torch.float32):
    """An eval-mode model of ``model_type`` with weights re-drawn large enough (fan-in scaled)
    that logits are far from flat."""
    fam = FAMILIES[model_type]
    config = fam.make_config(num_layers)
    torch.manual_seed(seed)
    model = _cls(fam.model_class)._from_config(config, attn_implementation=attn, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                fan_in = p.shape[-1] if "embed" not in name else 1
                p.copy_(torch.randn(p.shape, generator=gen) * (1.6 / fan_in**0.5))
    model.to(dtype).eval()
    for part in fam.eager_parts:
        getattr(model.config, part)._attn_implementation = "eager"
    if model.generation_config is not None:
        model.generation_config.pad_token_id = PAD_ID
        model.generation_config.eos_token_id = None
    return model


def _rand_text(gen, n):
    return torch.randint(3, TEXT_HIGH, (n,), generator=gen).tolist()


@torch.no_grad()
def inputs(model, rows=(0,), seed: int = 0) -> dict:
    """A left-padded batch: row i is variant rows[i] (text lengths and vision counts differ);
    a row is the same prompt alone and inside any batch."""
    fam = FAMILIES[model.config.model_type]
    rows_ids, extras = [], {}
    for variant in rows:
        gen = torch.Generator().manual_seed(seed * 1000 + variant * 7)
        segs, extra = fam.make_row(model, variant, gen)
        ids = [1] + _rand_text(gen, 3 + 2 * variant)
        for seg in segs:
            ids += seg + _rand_text(gen, 2 + variant % 3)
        ids += _rand_text(gen, 1 + variant)
        rows_ids.append(ids)
        for k, v in extra.items():
            extras.setdefault(k, []).extend(v)
    length = max(len(r) for r in rows_ids)
    input_ids = torch.full((len(rows_ids), length), PAD_ID, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for b, r in enumerate(rows_ids):
        input_ids[b, length - len(r):] = torch.tensor(r)
        attention_mask[b, length - len(r):] = 1
    out = {"input_ids": input_ids, "attention_mask": attention_mask}
    if "image_token_pooling" in extras:
        # Molmo2: pooling indices point into the flattened patches of every crop in the batch
        offset, shifted = 0, []
        for pix, pool in zip(extras["pixel_values"], extras["image_token_pooling"], strict=True):
            shifted.append(torch.where(pool >= 0, pool + offset, pool))
            offset += pix.shape[0] * pix.shape[1]
        extras["image_token_pooling"] = shifted
    for k, v in extras.items():
        if k == "pixel_values" and v[0].dim() == 4 and len({x.shape[-2:] for x in v}) > 1:
            # Pixtral: images of different sizes are padded to the largest (image_sizes says what is real)
            hmax, wmax = max(x.shape[-2] for x in v), max(x.shape[-1] for x in v)
            v = [torch.nn.functional.pad(x, (0, wmax - x.shape[-1], 0, hmax - x.shape[-2])) for x in v]
        if k in ("pixel_values", "pixel_attention_mask") and v[0].dim() >= 4 and len({x.shape[1] for x in v}) > 1 \
                and model.config.model_type in ("idefics3", "smolvlm"):
            # Idefics3 / SmolVLM: rows with fewer crops are padded with all-zero crops
            most = max(x.shape[1] for x in v)
            v = [torch.cat([x, x.new_zeros(x.shape[0], most - x.shape[1], *x.shape[2:])], 1) for x in v]
        elif k == "pixel_values" and v[0].dim() == 5:
            most = max(x.shape[1] for x in v)
            v = [torch.cat([x, x.new_zeros(x.shape[0], most - x.shape[1], *x.shape[2:])], 1) for x in v]
        out[k] = torch.cat(v, 0)
    mm = torch.zeros_like(input_ids)
    mm[input_ids == IMAGE_ID] = 1
    mm[input_ids == VIDEO_ID] = 2
    out["mm_token_type_ids"] = mm
    if fam.model_type == "gemma3":
        out["token_type_ids"] = (input_ids == IMAGE_ID).long()  # image tokens are type 1
    if fam.model_type == "paligemma":
        out["token_type_ids"] = torch.zeros_like(input_ids)  # the whole prompt is the prefix (type 0)
    import inspect

    accepted = inspect.signature(model.forward).parameters
    out = {k: v for k, v in out.items() if k in accepted or k in ("input_ids", "attention_mask")}
    return {k: (v.to(model.dtype) if v.is_floating_point() else v) for k, v in out.items()}


def vision_mask(batch) -> torch.Tensor:
    ids = batch["input_ids"]
    return (ids == IMAGE_ID) | (ids == VIDEO_ID)


def extend_kwargs(model_type: str) -> dict:
    """How a generated token is typed when a cache-free reference appends it."""
    # PaliGemma: generated tokens are the suffix (type 1), which attends causally
    return {"token_type": 1} if model_type == "paligemma" else {}


@functools.lru_cache(maxsize=8)
def _cached(model_type: str, attn: str, num_layers: int):
    return build(model_type, attn, num_layers=num_layers)


def model_or_skip(model_type: str, attn: str = "eager", num_layers: int = 4):
    """A tiny model of the family (built once per attention kernel and depth, shared by the
    suite's files: never change it in place), or a skip naming why this transformers cannot
    build it."""
    fam = FAMILIES[model_type]
    reason = missing(fam) or fam.no_attn.get(attn)
    if reason:
        pytest.skip(reason)
    return _cached(model_type, attn, num_layers)


def two_ks(model_type: str, num_layers: int = 4) -> list[int]:
    """Two values of K: the smallest the family allows and N - 1."""
    return sorted({FAMILIES[model_type].min_k, num_layers - 1})


def smallest_k(model, model_type: str, method: str, num_layers: int = 4) -> int:
    """The smallest K below N that ``method`` accepts on this family's tiny model. fastv-mask is
    skipped on hybrids: a layer without attention after K refuses it (that refusal has its own test)."""
    import vtwcli

    if method == "fastv-mask" and FAMILIES[model_type].mixers:
        pytest.skip("fastv-mask needs attention in every layer >= K; this hybrid refuses it")
    below = [k for k in vtwcli.engine.accepted_ks(model, method) if k < num_layers]
    assert below, f"{model_type}: no K below {num_layers} for {method}"
    return min(below)
