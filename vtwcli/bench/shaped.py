"""Scaled-down LLaVA-1.5-shaped random models for CPU benchmarks and tests.

A real LLaVA-1.5 prompt (576 vision tokens of ~640, 336 px image, 14 px patches, the real
chat template and processor) with a smaller decoder, so CPU runs finish in minutes. The
vision tower is cut to two narrow layers (the config reads features from layer -2): it is not what VTW changes, and the paper's FLOPs
leave it out. Built through the same path as ``--random-init`` (the shipped llava-1.5-7b
config and its synthetic processor), only with other sizes.
"""

from __future__ import annotations

import copy


def llava_shaped(
    *,
    hidden_size: int = 512,
    num_layers: int = 16,
    heads: int = 8,
    intermediate_size: int | None = None,
    vision_hidden: int = 64,
    dtype: str = "fp32",
    device: str = "cpu",
    attn: str = "sdpa",
):
    """A :class:`vtwcli.models.LoadedModel` with LLaVA-1.5-7B's prompt shape and a small decoder."""
    from vtwcli.models import from_config, shipped_config_dict
    from vtwcli.models.loading import config_from_dict
    from vtwcli.models.synthetic import synthetic_processor

    cfg = copy.deepcopy(shipped_config_dict("llava-1.5-7b"))
    text = cfg["text_config"]
    text.update(
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        intermediate_size=intermediate_size or int(hidden_size * 11008 / 4096),
    )
    cfg["vision_config"].update(
        hidden_size=vision_hidden, intermediate_size=4 * vision_hidden, num_hidden_layers=2,
        num_attention_heads=max(1, vision_hidden // 64), projection_dim=vision_hidden,
    )  # fmt: skip
    config = config_from_dict(cfg)
    return from_config(
        config,
        processor=synthetic_processor("llava-1.5-7b"),
        alias=None,
        model_id=f"llava-1.5-shaped-h{hidden_size}-L{num_layers}",
        dtype=dtype,
        device=device,
        attn=attn,
        synthetic_processor=True,
    )
