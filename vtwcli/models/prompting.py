"""Prompt styles: how a conversation becomes the model's prompt text.

``chat`` (the default) is the processor's own chat template. ``vicuna_v1`` is the
conversation of LLaVA's original code (its ``conv_vicuna_v1`` template), which lmms-eval's
original ``llava`` model used when the VTW paper evaluated LLaVA-1.5 and LLaVA-NeXT-7B: a
system sentence, then ``USER: <image>\\n{question} ASSISTANT:``. The Hugging Face chat
template of the converted checkpoints has no system sentence, so its prompts are about 35
tokens shorter than the paper's (641 tokens on average on MME with a 576-token image).
Only families whose architecture record lists a style accept it.
"""

from __future__ import annotations

from typing import Any

from vtwcli.errors import UsageError

PROMPT_STYLES = ("chat", "vicuna_v1")
DEFAULT_STYLE = "chat"

VICUNA_V1_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
_VICUNA_ROLES = {"user": "USER", "assistant": "ASSISTANT"}
_VICUNA_SEP, _VICUNA_SEP2 = " ", "</s>"


def check_style_name(style: str | None) -> str:
    """``style`` if it is a known style name (checked before any model is loaded)."""
    style = DEFAULT_STYLE if style is None else style
    if style not in PROMPT_STYLES:
        raise UsageError(f"--prompt-style must be one of {', '.join(PROMPT_STYLES)}, got {style!r}")
    return style


def check_style(style: str | None, arch: Any = None, model_name: str = "this model") -> str:
    """``style`` if ``arch`` supports it (``chat`` always is); a one-line error otherwise."""
    style = check_style_name(style)
    if style != DEFAULT_STYLE:
        offered = tuple(getattr(arch, "prompt_styles", ()) or ())
        if style not in offered:
            family = getattr(arch, "family", None) or model_name
            raise UsageError(
                f"--prompt-style {style} reproduces LLaVA's original conversation and is offered for the "
                f"LLaVA-1.5 and LLaVA-NeXT families only; {family} uses its chat template (--prompt-style chat)"
            )
    return style


def vicuna_v1(conversation: list[dict[str, Any]], image_token: str = "<image>", video_token: str = "<video>") -> str:
    """LLaVA's ``conv_vicuna_v1`` prompt for ``conversation`` (a list of {role, content}).

    As lmms-eval's original llava model builds it: a turn's images become ``<image>``
    placeholders joined by spaces, then a newline, then the text; turns are ``ROLE: text``
    separated by a space after the user and ``</s>`` after the assistant; the prompt ends with
    ``ASSISTANT:`` for the reply.
    """
    out = VICUNA_V1_SYSTEM + _VICUNA_SEP
    for i, message in enumerate(conversation):
        role = _VICUNA_ROLES.get(message["role"])
        if role is None:
            raise UsageError(f"the vicuna_v1 prompt style has user and assistant turns only, got {message['role']!r}")
        content = message["content"]
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        marks = [image_token for item in content if item["type"] == "image"]
        marks += [video_token for item in content if item["type"] == "video"]
        text = "".join(item.get("text", "") for item in content if item["type"] == "text")
        body = (" ".join(marks) + "\n" + text) if marks else text
        out += f"{role}: {body}" + (_VICUNA_SEP if i % 2 == 0 else _VICUNA_SEP2)
    return out + "ASSISTANT:"
