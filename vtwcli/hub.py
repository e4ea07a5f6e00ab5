"""Is the Hugging Face hub reachable at all? (asked once per process, in seconds).

Models and datasets both come from the hub. On a machine without internet huggingface_hub
retries for about 30 s per file before giving up; a quick TCP check first turns that into
one clear message in seconds.
"""

from __future__ import annotations

import socket
from urllib.parse import urlparse

_reachable: dict[str, bool] = {}


def hub_reachable(timeout: float = 3.0) -> bool:
    """False in offline mode or when the hub's host does not answer within ``timeout``."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    try:
        import datasets

        if datasets.config.HF_HUB_OFFLINE:
            return False
    except ImportError:  # pragma: no cover - datasets is a dependency
        pass
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    if host not in _reachable:
        try:
            with socket.create_connection((host, 443), timeout=timeout):
                _reachable[host] = True
        except OSError:
            _reachable[host] = False
    return _reachable[host]
