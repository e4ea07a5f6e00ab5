"""Is a hub model in the local Hugging Face cache? (answered without touching the network)."""

from __future__ import annotations

import json
import os


def offline() -> bool:
    """True when the user asked for offline mode (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return True
    return False


def _cached_file(repo_id: str, filename: str, revision: str | None) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    try:
        hit = try_to_load_from_cache(repo_id, filename, revision=revision)
    except Exception:  # malformed repo ids raise validation errors: treat as not cached
        return None
    return hit if isinstance(hit, str) else None


def weights_cached(repo_id: str, revision: str | None = None) -> str:
    """"yes" (config and every weight file cached), "partial", or "no"."""
    if _cached_file(repo_id, "config.json", revision) is None:
        return "no"
    if _cached_file(repo_id, "model.safetensors", revision) is not None:
        return "yes"
    index = _cached_file(repo_id, "model.safetensors.index.json", revision)
    if index is None:
        return "partial"
    try:
        with open(index, encoding="utf-8") as fh:
            shards = sorted(set(json.load(fh)["weight_map"].values()))
    except (OSError, ValueError, KeyError):
        return "partial"
    have = sum(_cached_file(repo_id, s, revision) is not None for s in shards)
    return "yes" if shards and have == len(shards) else "partial"


def download_hint(repo_id: str, revision: str | None = None) -> str:
    rev = f" --revision {revision}" if revision else ""
    return f"`huggingface-cli download {repo_id}{rev}` (or `hf download {repo_id}{rev}`)"
