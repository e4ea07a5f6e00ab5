"""Shrunken copies of the shipped configs (the library's, re-exported for the tests)."""

from vtwcli.models.shrink import TEXT_LAYERS, shrunk_config_dict

__all__ = ["TEXT_LAYERS", "shrunk_config_dict"]
