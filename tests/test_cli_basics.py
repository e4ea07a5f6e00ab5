import subprocess
import sys
import time

from typer.testing import CliRunner

from vtwcli.cli import app

runner = CliRunner()


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for cmd in ("calibrate", "bench", "run", "models", "datasets"):
        assert cmd in result.output


def test_help_does_not_import_torch():
    code = "import sys; from vtwcli.cli import app; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_help_is_fast():
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "vtwcli", "--help"], check=True, capture_output=True)
    # generous bound: the point is "no torch import", which alone costs seconds
    assert time.perf_counter() - t0 < 3.0


def test_user_error_is_one_line_and_exit_2():
    result = runner.invoke(app, ["datasets", "--task", "mmeee"])
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "Traceback" not in result.output


def test_debug_shows_the_traceback():
    from vtwcli.errors import DatasetError

    result = runner.invoke(app, ["--debug", "datasets", "--task", "mmeee"])
    assert result.exit_code != 0
    assert isinstance(result.exception, DatasetError)
