"""Options several commands share (how a model is loaded), defined once so they read the same."""

from __future__ import annotations

import contextlib

import typer


def dtype_option():
    return typer.Option("auto", "--dtype", help="auto, bf16, fp16 or fp32.")


def device_option():
    return typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N.")


def attn_option():
    return typer.Option("sdpa", "--attn", help="Attention implementation: sdpa, eager or flash_attention_2.")


def prompt_style_option():
    return typer.Option(
        "chat", "--prompt-style",
        help="chat (the processor's chat template) or vicuna_v1 (LLaVA's original conversation with its system "
        "sentence, as the paper evaluated LLaVA-1.5/NeXT; those families only).",
    )


def device_map_option():
    return typer.Option(
        None, "--device-map", help="auto: spread a model too large for one device over all of them (accelerate)."
    )


def force_option():
    return typer.Option(
        False, "--force", help="Load the model even when the memory estimate says it does not fit the device."
    )


def memory_check(force: bool):
    """What --force does: the loads inside skip the memory estimate (vtwcli.models.memory)."""
    if not force:
        return contextlib.nullcontext()
    from vtwcli.models.memory import no_memory_check

    return no_memory_check()
