"""`vtw bench` on local benchmark copies names the paper's metric: MME total, POPE F1."""

from __future__ import annotations

import json

import builders as b
import pytest
from test_selection import _mme_sorted
from typer.testing import CliRunner

from vtwcli.cli import app


@pytest.fixture(autouse=True)
def _empty_cwd(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)


def _bench(args):
    return CliRunner().invoke(app, ["bench", "--device", "cpu", "--max-new-tokens", "2", "--warmup", "0",
                                    "--methods", "baseline,vtw", "--k", "3", *args],
                              env={"HF_HUB_OFFLINE": "1", "COLUMNS": "250"})  # fmt: skip


def test_local_mme_reports_total_as_its_headline(tmp_path):
    path = b.save_dict(_mme_sorted(2), tmp_path / "mme", "test")
    js, md, cs = tmp_path / "r.json", tmp_path / "r.md", tmp_path / "r.csv"
    res = _bench(["--data", "mme", "--data-path", str(path), "--limit", "4", "--json", str(js),
                  "--markdown", str(md), "--csv", str(cs)])  # fmt: skip
    assert res.exit_code == 0, res.output
    data = json.loads(js.read_text())
    assert data["task"]["headline"] == "MME total" and data["task"]["headline_metric"] == "total"
    for row in data["rows"]:
        assert row["metric"] == "total"
        assert row["accuracy"] == row["metrics"]["total"] == row["metrics"]["perception"] + row["metrics"]["cognition"]
    # the selection is recorded: which rows, how drawn
    assert data["task"]["subset"] == "random" and len(data["task"]["sample_ids"]) == 4
    assert data["task"]["selection"].startswith("random 4 of 12 (seed 0), stratified by subtask")
    assert "| MME total " in md.read_text().splitlines()[0] and "MME" in res.output
    assert "metric" in cs.read_text().splitlines()[0]


def test_pope_headline_is_f1_and_first_subset_takes_the_first_rows(tmp_path):
    path = b.save_dict(b.pope_rows(6), tmp_path / "pope", "test")
    js = tmp_path / "r.json"
    res = _bench(["--data", "pope", "--data-path", str(path), "--limit", "3", "--subset", "first", "--json", str(js)])
    assert res.exit_code == 0, res.output
    data = json.loads(js.read_text())
    assert data["task"]["headline"] == "POPE F1" and data["rows"][0]["metric"] == "f1"
    assert data["task"]["sample_ids"] == ["1000", "1001", "1002"] and data["task"]["selection"] == "first 3"


def test_bad_subset_is_one_line_before_loading(tmp_path):
    res = _bench(["--subset", "shuffle"])
    assert res.exit_code == 2 and "--subset must be 'random'" in res.output and "Traceback" not in res.output
