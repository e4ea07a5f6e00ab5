"""Options several commands share (how a model is loaded), defined once so they read the same."""

from __future__ import annotations

import typer


def dtype_option():
    return typer.Option("auto", "--dtype", help="auto, bf16, fp16 or fp32.")


def device_option():
    return typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N.")


def attn_option():
    return typer.Option("sdpa", "--attn", help="Attention implementation: sdpa, eager or flash_attention_2.")


def device_map_option():
    return typer.Option(
        None, "--device-map", help="auto: spread a model too large for one device over all of them (accelerate)."
    )
