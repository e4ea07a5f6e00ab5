"""What `vtw models` lists: one row per alias, read from the shipped configs (no torch), and one row
per architecture family with its status (verified / refused and why) read from vtwcli.archs."""

from __future__ import annotations

import json
from typing import Any

from vtwcli.models.cache import weights_cached
from vtwcli.models.registry import _SPECS, TESTBED_DIR, TESTBED_ID


def model_rows() -> list[dict[str, Any]]:
    rows = [_testbed_row()]
    for spec in _SPECS:
        shipped = spec.shipped()
        cfg = shipped["config"]
        text = cfg["text_config"]
        status, reason = family_status(cfg["model_type"])
        rows.append(
            {
                "alias": spec.alias,
                "family": spec.family,
                "status": status,
                "status_reason": reason,
                "stand_in_processor": shipped.get("processor") is not None,
                "other_names": list(spec.other_names),
                "hub_id": spec.hub_id,
                "model_type": cfg["model_type"],
                "num_layers": text["num_hidden_layers"],
                "hidden_size": text["hidden_size"],
                "vision_tokens_per_image": shipped["vision_tokens"]["per_image"],
                "vision_tokens": shipped["vision_tokens"],
                "cached": weights_cached(spec.hub_id),
                "note": spec.note,
            }
        )
    return rows


def _testbed_row() -> dict[str, Any]:
    path = TESTBED_DIR / "config.json"
    row: dict[str, Any] = {
        "alias": "testbed",
        "other_names": [],
        "hub_id": TESTBED_ID,
        "model_type": None,
        "family": "LLaVA-1.5",
        "status": "verified",
        "status_reason": None,
        "stand_in_processor": False,
        "num_layers": None,
        "hidden_size": None,
        "vision_tokens_per_image": None,
        "cached": "no",
        "note": "bundled with vtw (vtwcli/models/testbed in the installed package)",
    }
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        row["note"] = f"bundled testbed missing from {TESTBED_DIR}"
        return row
    text = cfg.get("text_config", {})
    row.update(
        model_type=cfg.get("model_type"),
        num_layers=text.get("num_hidden_layers"),
        hidden_size=text.get("hidden_size"),
        vision_tokens_per_image=cfg.get("image_seq_length"),
        cached="bundled" if (TESTBED_DIR / "model.safetensors").is_file() else "no",
    )
    return row


def family_status(model_type: str) -> tuple[str, str | None]:
    """("verified", None) for a family the engine supports; otherwise ("refused" or "unsupported", why),
    read from the architecture records (vtwcli.archs)."""
    from vtwcli.archs import get_arch
    from vtwcli.errors import UnsupportedModelError

    try:
        record = get_arch(model_type)
    except UnsupportedModelError as err:
        return "unsupported", str(err).split(". Supported")[0]
    return ("verified", None) if record.refusal is None else ("refused", record.refusal)


def family_rows() -> list[dict[str, Any]]:
    """One row per architecture record (verified and refused), with the aliases that load it."""
    from vtwcli import archs

    records = archs.records()
    by_type: dict[str, list[str]] = {}
    for spec in _SPECS:
        by_type.setdefault(spec.shipped()["config"]["model_type"], []).append(spec.alias)
    rows = []
    for rec in records:
        status, reason = family_status(rec.model_type)
        rows.append(
            {
                "family": rec.family,
                "model_type": rec.model_type,
                "status": status,
                "reason": reason,
                "aliases": by_type.get(rec.model_type, []),
                "notes": rec.notes or None,
            }
        )
    return rows
