"""`vtw models`: every alias with its family's status, and every architecture record with its reason."""

import json

from typer.testing import CliRunner

from vtwcli.archs import get_arch, records
from vtwcli.cli import app
from vtwcli.models import SPECS

cli = CliRunner()


def _json(*args):
    res = cli.invoke(app, ["models", *args, "--json", "-"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_every_family_is_listed_with_its_status_and_reason():
    rows = {r["model_type"]: r for r in _json("--families")}
    assert set(rows) == {r.model_type for r in records()}
    for rec in records():
        row = rows[rec.model_type]
        assert row["family"] == rec.family
        if rec.refusal is None:
            assert row["status"] == "verified" and row["reason"] is None
        else:
            assert row["status"] == "refused" and row["reason"] == rec.refusal
    assert rows["llama4"]["status"] == "refused" and "transformers" in rows["llama4"]["reason"]
    assert "qwen3-vl-8b" in rows["qwen3_vl"]["aliases"] and "gemma-3-4b-it" in rows["gemma3"]["aliases"]


def test_every_alias_carries_its_familys_status():
    rows = {r["alias"]: r for r in _json()}
    assert set(SPECS) | {"testbed"} == set(rows)
    for alias, spec in SPECS.items():
        rec = get_arch(spec.shipped()["config"]["model_type"])
        assert rows[alias]["family"] == rec.family
        assert rows[alias]["status"] == ("verified" if rec.refusal is None else "refused")
        assert rows[alias]["stand_in_processor"] == (spec.shipped()["processor"] is not None)


def test_the_tables_print():
    res = cli.invoke(app, ["models", "--families"])
    assert res.exit_code == 0 and "Llama 4" in res.output and "refused" in res.output and "verified" in res.output
    res = cli.invoke(app, ["models"])
    assert res.exit_code == 0 and "qwen3-vl-8b" in res.output and "status" in res.output
