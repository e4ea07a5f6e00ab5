"""Errors a user can act on.

Every exception raised for a user's mistake derives from :class:`VTWError`. The CLI maps
them to one line on stderr and exit code 2 (``--debug`` shows the traceback); library users
catch them like any exception. Messages say what was wrong and what to do next.
"""

from __future__ import annotations


class VTWError(Exception):
    """Base class: a problem the user can fix. The CLI prints ``str(err)`` and exits 2."""

    exit_code = 2


class UsageError(VTWError, ValueError):
    """An option or argument has a value that cannot work (bad K, eta <= 0, --limit 0...)."""


class KOutOfRangeError(UsageError):
    """K is outside 1..N for the model's N decoder layers."""


class UnsupportedModelError(VTWError):
    """The model's architecture has no record in vtwcli.archs."""


class AlreadyPatchedError(VTWError, RuntimeError):
    """withdraw()/apply() was called on a model that already has an engine attached."""


class NoVisionTokensError(VTWError):
    """The inputs contain no image/video placeholder tokens for the engine to withdraw."""


class ModelNotFoundError(VTWError):
    """An alias, hub id or local directory could not be resolved or loaded."""


class DatasetError(VTWError):
    """A task or dataset could not be found, loaded or has the wrong schema."""


class ProfileError(VTWError):
    """A profile file is missing, malformed, not ours, or made for another model."""


class InputFileError(VTWError):
    """A user-provided file (image, video, JSONL) is missing, unreadable or corrupt."""


class OutputPathError(VTWError):
    """An output path cannot be written."""


class MissingExtraError(VTWError):
    """An optional dependency (an extra such as ``plot``) is needed for what was asked and is not installed."""


class JudgeError(VTWError):
    """The answer-matching judge (an OpenAI-compatible endpoint) cannot be used as configured."""


def k_below_one(name: str, value: object) -> KOutOfRangeError:
    """The one wording for a K under 1 (``--k 0``), in every command."""
    return KOutOfRangeError(
        f"{name} must be at least 1: K counts the decoder layers that still see the vision tokens, "
        f"and K = 0 would leave none; got {value!r}"
    )
