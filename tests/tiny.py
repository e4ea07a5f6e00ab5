"""Tiny random multimodal models of every supported architecture, and matching inputs.

Stable API (other test directories import these; keep the names and signatures):

    TINY_ARCHS                      tuple of architecture names (each a config.model_type)
    build_tiny_model(arch, attn="eager", dtype=torch.float32, num_layers=4, seed=0)
                                    -> an eval-mode *ForConditionalGeneration with random
                                       weights scaled so that logits are far from flat
    tiny_inputs(model, rows=(0,), seed=0, device=None)
                                    -> dict of model inputs for a left-padded batch; each
                                       entry of `rows` is a variant number: variants differ
                                       in text length and in vision-token count (0, 1, 2...)
    vision_mask(model, inputs)      -> bool [B, L]: where the placeholder tokens are
                                       (computed here from the config, independently of
                                       vtwcli.archs)
    text_only_inputs(model, length=8, seed=0)
                                    -> inputs with no vision placeholder at all
    IMAGE_ID, VIDEO_ID, PAD_ID      the placeholder and padding token ids of every tiny model

Tiny models compute far faster with torch.set_num_threads(1) on a shared CPU.

Inputs are built the way each family's processor lays them out: the placeholder id is
repeated once per vision feature the model will produce (the count is asked of the model's
own feature extractor, so LLaVA-NeXT's anyres count and Qwen's grids come out right), with
the family's start/end markers around it where the processor adds them.
"""

from __future__ import annotations

import torch
from transformers import (
    CLIPVisionConfig,
    InternVLConfig,
    InternVLForConditionalGeneration,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2Config,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    VideoLlavaConfig,
    VideoLlavaForConditionalGeneration,
)
from transformers.models.internvl.configuration_internvl import InternVLVisionConfig

VOCAB = 128
PAD_ID = 0
IMAGE_ID = VOCAB - 1
VIDEO_ID = VOCAB - 2
VISION_START_ID = VOCAB - 3
VISION_END_ID = VOCAB - 4
# Text tokens are drawn below this so they never collide with a special id.
TEXT_HIGH = VOCAB - 8

_TEXT = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=128,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
    pad_token_id=PAD_ID,
    bos_token_id=1,
    eos_token_id=2,
    tie_word_embeddings=False,
)
_CLIP = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, projection_dim=32)


def _llava_config(num_layers):
    return LlavaConfig(
        text_config=LlamaConfig(**_TEXT, num_hidden_layers=num_layers),
        vision_config=CLIPVisionConfig(**_CLIP, image_size=56, patch_size=14),
        image_token_index=IMAGE_ID,
        image_seq_length=16,
        vision_feature_layer=-1,
    )


def _llava_next_config(num_layers):
    return LlavaNextConfig(
        text_config=LlamaConfig(**_TEXT, num_hidden_layers=num_layers),
        vision_config=CLIPVisionConfig(**_CLIP, image_size=28, patch_size=14),
        image_token_index=IMAGE_ID,
        image_grid_pinpoints=[[28, 56], [56, 28], [56, 56]],
        vision_feature_layer=-1,
        image_seq_length=4,
    )


def _video_llava_config(num_layers):
    return VideoLlavaConfig(
        text_config=LlamaConfig(**_TEXT, num_hidden_layers=num_layers),
        vision_config=CLIPVisionConfig(**_CLIP, image_size=42, patch_size=14),
        image_token_index=IMAGE_ID,
        video_token_index=VIDEO_ID,
        vision_feature_layer=-1,
        image_seq_length=9,
        video_seq_length=18,
    )


def _internvl_config(num_layers):
    text = {k: v for k, v in _TEXT.items() if k != "tie_word_embeddings"}
    return InternVLConfig(
        text_config=Qwen2Config(**text, num_hidden_layers=num_layers),
        vision_config=InternVLVisionConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            image_size=[56, 56], patch_size=[7, 7],
        ),
        image_token_id=IMAGE_ID,
        image_seq_length=16,
        downsample_ratio=0.5,
        tie_word_embeddings=False,
    )


def _qwen_text(num_layers):
    text = {k: v for k, v in _TEXT.items()}
    # head_dim 16 -> 8 rotary frequencies split over (temporal, height, width)
    text["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}
    return dict(text, num_hidden_layers=num_layers)


def _qwen2_vl_config(num_layers):
    return Qwen2VLConfig(
        text_config=_qwen_text(num_layers),
        vision_config=dict(depth=2, embed_dim=32, hidden_size=64, num_heads=2, patch_size=4,
                           spatial_merge_size=2, temporal_patch_size=2),
        image_token_id=IMAGE_ID, video_token_id=VIDEO_ID,
        vision_start_token_id=VISION_START_ID, vision_end_token_id=VISION_END_ID,
    )


def _qwen2_5_vl_config(num_layers):
    return Qwen2_5_VLConfig(
        text_config=_qwen_text(num_layers),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, out_hidden_size=64, num_heads=2,
                           patch_size=4, spatial_merge_size=2, temporal_patch_size=2, window_size=16,
                           fullatt_block_indexes=[1]),
        image_token_id=IMAGE_ID, video_token_id=VIDEO_ID,
        vision_start_token_id=VISION_START_ID, vision_end_token_id=VISION_END_ID,
    )


_BUILDERS = {
    LlavaConfig.model_type: (_llava_config, LlavaForConditionalGeneration),
    LlavaNextConfig.model_type: (_llava_next_config, LlavaNextForConditionalGeneration),
    Qwen2VLConfig.model_type: (_qwen2_vl_config, Qwen2VLForConditionalGeneration),
    Qwen2_5_VLConfig.model_type: (_qwen2_5_vl_config, Qwen2_5_VLForConditionalGeneration),
    VideoLlavaConfig.model_type: (_video_llava_config, VideoLlavaForConditionalGeneration),
    InternVLConfig.model_type: (_internvl_config, InternVLForConditionalGeneration),
}
TINY_ARCHS = tuple(_BUILDERS)


def build_tiny_model(arch: str, attn: str = "eager", dtype=torch.float32, num_layers: int = 4, seed: int = 0):
    """A random model of family `arch`; weights are re-drawn with a large std (fan-in scaled)
    because default tiny inits give near-uniform logits, and greedy comparisons on flat
    logits prove nothing."""
    make_config, cls = _BUILDERS[arch]
    config = make_config(num_layers)
    torch.manual_seed(seed)
    model = cls._from_config(config, attn_implementation=attn, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                fan_in = p.shape[-1] if "embed" not in name else 1
                std = 1.6 / fan_in**0.5
                p.copy_(torch.randn(p.shape, generator=gen) * std)
    model.to(dtype).eval()
    if model.generation_config is not None:
        model.generation_config.pad_token_id = PAD_ID
        model.generation_config.eos_token_id = None
    return model


# ---------------------------------------------------------------- inputs


def _rand_text(gen, n):
    return torch.randint(3, TEXT_HIGH, (n,), generator=gen).tolist()


def _row_llava(model, variant, gen):
    """One image for even variants, two for odd ones (LLaVA-1.5 has a fixed count per image)."""
    n_img = 1 + variant % 2
    size = model.config.vision_config.image_size
    pix = torch.randn(n_img, 3, size, size, generator=gen)
    per = _count(model.model.get_image_features(pixel_values=pix).pooler_output)
    segs = [[IMAGE_ID] * c for c in per]
    return segs, {"pixel_values": [pix]}


def _row_llava_next(model, variant, gen):
    # anyres: the image size picks the grid, so the vision count differs by variant
    sizes = [(28, 56), (56, 56), (56, 28), (40, 40)]
    h, w = sizes[variant % len(sizes)]
    tile = model.config.vision_config.image_size
    from transformers.models.llava_next.modeling_llava_next import image_size_to_num_patches

    n_patches = image_size_to_num_patches((h, w), model.config.image_grid_pinpoints, tile)
    pix = torch.randn(1, n_patches, 3, tile, tile, generator=gen)
    image_sizes = torch.tensor([[h, w]])
    out = model.model.get_image_features(pixel_values=pix, image_sizes=image_sizes).pooler_output
    per = _count(out)
    return [[IMAGE_ID] * c for c in per], {"pixel_values": [pix], "image_sizes": [image_sizes]}


def _row_video_llava(model, variant, gen):
    size = model.config.vision_config.image_size
    if variant % 2 == 0:
        pix = torch.randn(1, 3, size, size, generator=gen)
        per = _count(model.model.get_image_features(pixel_values_images=pix).pooler_output)
        return [[IMAGE_ID] * per[0]], {"pixel_values_images": [pix]}
    frames = 2
    vid = torch.randn(1, frames, 3, size, size, generator=gen)
    out = model.model.get_video_features(pixel_values_videos=vid).pooler_output
    n = out.shape[0] * out.shape[1] if out.dim() == 3 else out.shape[0]
    return [[VIDEO_ID] * n], {"pixel_values_videos": [vid]}


def _row_internvl(model, variant, gen):
    # InternVL's processor tiles an image; more tiles, more tokens
    tiles = 1 + variant % 3
    h, w = model.config.vision_config.image_size
    pix = torch.randn(tiles, 3, h, w, generator=gen)
    per = _count(model.model.get_image_features(pixel_values=pix).pooler_output)
    n = sum(per)
    return [[VISION_START_ID] + [IMAGE_ID] * n + [VISION_END_ID]], {"pixel_values": [pix]}


def _row_qwen(model, variant, gen):
    grids = [(1, 4, 8), (1, 6, 8), (1, 8, 8), (1, 4, 4)]
    t, gh, gw = grids[variant % len(grids)]
    vc = model.config.vision_config
    patch_dim = vc.in_channels * vc.temporal_patch_size * vc.patch_size**2
    pix = torch.randn(t * gh * gw, patch_dim, generator=gen)
    n = t * gh * gw // vc.spatial_merge_size**2
    return (
        [[VISION_START_ID] + [IMAGE_ID] * n + [VISION_END_ID]],
        {"pixel_values": [pix], "image_grid_thw": [torch.tensor([[t, gh, gw]])]},
    )


_ROWS = {
    LlavaConfig.model_type: _row_llava,
    LlavaNextConfig.model_type: _row_llava_next,
    Qwen2VLConfig.model_type: _row_qwen,
    Qwen2_5_VLConfig.model_type: _row_qwen,
    VideoLlavaConfig.model_type: _row_video_llava,
    InternVLConfig.model_type: _row_internvl,
}


def _count(features):
    if isinstance(features, (list, tuple)):
        return [f.shape[-2] if f.dim() == 3 else f.shape[0] for f in features]
    if features.dim() == 3:
        return [features.shape[1]] * features.shape[0]
    return [features.shape[0]]


@torch.no_grad()
def tiny_inputs(model, rows=(0,), seed: int = 0, device=None) -> dict:
    """A left-padded batch: row i is variant rows[i] (text lengths and vision counts differ)."""
    arch = model.config.model_type
    rows_ids, extras = [], {}
    for variant in rows:
        # seeded by variant only, so a row is the same prompt alone and inside any batch
        gen = torch.Generator().manual_seed(seed * 1000 + variant * 7)
        segs, extra = _ROWS[arch](model, variant, gen)
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
    for k, v in extras.items():
        if k == "pixel_values" and v[0].dim() == 5:
            # LLaVA-NeXT stacks images padded to the largest patch count
            most = max(x.shape[1] for x in v)
            v = [torch.cat([x, x.new_zeros(x.shape[0], most - x.shape[1], *x.shape[2:])], 1) for x in v]
        out[k] = torch.cat(v, 0)
    if arch in (Qwen2VLConfig.model_type, Qwen2_5_VLConfig.model_type):
        mm = torch.zeros_like(input_ids)
        mm[input_ids == IMAGE_ID] = 1
        mm[input_ids == VIDEO_ID] = 2
        out["mm_token_type_ids"] = mm
    dtype = model.dtype
    dev = device if device is not None else model.device
    return {k: (v.to(dev, dtype) if v.is_floating_point() else v.to(dev)) for k, v in out.items()}


def vision_mask(model, inputs) -> torch.Tensor:
    ids = inputs["input_ids"]
    return (ids == IMAGE_ID) | (ids == VIDEO_ID)


def text_only_inputs(model, length: int = 8, seed: int = 0, device=None) -> dict:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.tensor([[1] + _rand_text(gen, length - 1)])
    dev = device if device is not None else model.device
    out = {"input_ids": ids.to(dev), "attention_mask": torch.ones_like(ids).to(dev)}
    return out
