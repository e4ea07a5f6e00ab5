"""Options read the same in every command: --json always takes a FILE ('-' for stdout), --help
shows what a value is (FILE, N, K...) and nothing after a flag."""

from __future__ import annotations

import json

import pytest
import typer.main
from typer.testing import CliRunner

from vtwcli.cli import app

cli = CliRunner()


def _commands():
    group = typer.main.get_command(app)
    return group, dict(group.commands)


def test_every_option_has_a_proper_metavar():
    group, commands = _commands()
    for name, cmd in [("vtw", group), *commands.items()]:
        for param in cmd.params:
            if getattr(param, "param_type_name", None) != "option":
                continue
            if param.is_flag:
                assert param.metavar == "", f"{name} {param.opts}: a flag shows no value"
            else:
                assert param.metavar and not param.metavar.startswith("<"), f"{name} {param.opts}: {param.metavar!r}"


@pytest.mark.parametrize("command", [[], *[[c] for c in sorted(_commands()[1])]])
def test_help_shows_no_raw_type_names(command):
    res = cli.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    for raw in ("<bool>", "<str>", "<int>", "<float>", "<path>"):
        assert raw not in res.output, f"vtw {' '.join(command)} --help shows {raw}"


def test_json_takes_a_file_in_every_command():
    _, commands = _commands()
    with_json = {name: p for name, cmd in commands.items() for p in cmd.params if "--json" in getattr(p, "opts", ())}
    assert {"run", "bench", "calibrate", "models", "datasets"} <= set(with_json)
    for name, param in with_json.items():
        assert not param.is_flag, f"vtw {name} --json is a flag; every command takes --json FILE ('-' for stdout)"
        assert param.metavar == "FILE"


def test_models_and_datasets_json_to_a_file_or_stdout(tmp_path):
    out = tmp_path / "models.json"
    res = cli.invoke(app, ["models", "--json", str(out)])
    assert res.exit_code == 0, res.output
    rows = json.loads(out.read_text())
    assert any(r["alias"] == "testbed" for r in rows)
    res = cli.invoke(app, ["models", "--json", "-"])
    assert json.loads(res.stdout) == rows
    out = tmp_path / "datasets.json"
    res = cli.invoke(app, ["datasets", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert any(r["task"] == "shapes" for r in json.loads(out.read_text()))


def test_k_zero_reads_the_same_in_run_and_bench():
    run = cli.invoke(app, ["run", "--k", "0", "--prompt", "x"])
    bench = cli.invoke(app, ["bench", "--k", "0"])
    assert run.exit_code == bench.exit_code == 2
    assert run.output == bench.output
    assert run.output.startswith("error: --k must be at least 1") and run.output.count("\n") == 1


@pytest.mark.parametrize("args", [
    ["bench", "--bogus"], ["run", "--k", "x"], ["runn"], ["models", "--json"], ["calibrate", "--samples"],
])  # fmt: skip
def test_typer_usage_errors_are_one_line_and_exit_2(args):
    res = cli.invoke(app, args)
    assert res.exit_code == 2, res.output
    assert res.output.count("\n") == 1 and res.output.startswith("error: "), res.output
    assert "╭" not in res.output
