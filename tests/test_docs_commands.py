"""Every `vtw` command line quoted in README.md and docs/*.md still works, so the docs cannot drift.

The lines are read from the documents as they are (a page or a command added later is picked
up by itself): in a fenced block that shows a session (`$ ` prompts), the prompted lines; in a
block without prompts, every line that starts with `vtw` (or runs `-m vtwcli` under torchrun /
accelerate launch).

- Every line is parsed by the real command line (the same option parser `vtw` uses): an option
  that was renamed or removed, or a value of the wrong type, fails here.
- Lines that can run offline (the bundled testbed, its `shapes` task, the files under
  docs/examples, `--random-init --shrink`, `vtw models`, `vtw datasets`) are run, in a scratch
  directory holding copies of docs/examples and profiles/ (so the checkout stays clean). They
  must succeed; where the document shows an `error:` line after the command, a one-line error
  (exit 2) is accepted instead. Runs of bench, calibrate and inspect are marked slow (they
  still run in CI).
- Lines that need weights, a dataset download, a GPU or several processes are only parsed
  (:func:`why_not_run` says what each needs).
"""

from __future__ import annotations

import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from vtwcli.cli import app

REPO = Path(__file__).resolve().parents[1]
COMMAND = re.compile(r"^(?:[A-Z_]+=\S+\s+)*(vtw\s|vtw$|torchrun\s|accelerate launch\s|python -m vtwcli\s)")
RUNNABLE_MODELS = {None, "testbed"}
RUNNABLE_DATA = {None, "shapes"}
SLOW_COMMANDS = {"bench", "calibrate", "inspect"}


@dataclass
class DocCommand:
    where: str  # file:line
    line: str  # the command as quoted
    shows_error: bool  # the document shows an `error:` line after it


def _blocks(text: str):
    """Fenced blocks of a markdown text as lists of (line number, line)."""
    block, inside = [], False
    for n, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            if inside:
                yield block
            block, inside = [], not inside
            continue
        if inside:
            block.append((n, line))


def collect() -> list[DocCommand]:
    out = []
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for block in _blocks(path.read_text(encoding="utf-8")):
            prompted = any(line.startswith("$ ") for _, line in block)
            i = 0
            while i < len(block):
                n, line = block[i]
                i += 1
                if prompted:
                    if not line.startswith("$ "):
                        continue
                    line = line[2:]
                if not COMMAND.match(line.strip()):
                    continue
                text = line.strip()
                while text.endswith("\\") and i < len(block):  # continued on the next line
                    text = text[:-1] + " " + block[i][1].strip()
                    i += 1
                shown = []
                j = i
                while prompted and j < len(block) and not block[j][1].startswith("$ "):
                    shown.append(block[j][1])
                    j += 1
                rel = path.relative_to(REPO)
                out.append(DocCommand(f"{rel}:{n}", text, any(s.startswith("error:") for s in shown)))
    return out


def vtw_args(line: str) -> list[str]:
    """The arguments after `vtw` (or `-m vtwcli`), without environment settings and comments."""
    words = shlex.split(line, comments=True)
    for i, w in enumerate(words):  # the vtw part of a shell line (`vtw ... && cat out.md`, `> file`)
        if w in ("&&", "||", "|", ";", ">", ">>", "2>&1"):
            words = words[:i]
            break
    while words and re.match(r"^[A-Z_]+=", words[0]):
        words.pop(0)
    if words and words[0] == "vtw":
        return words[1:]
    if "vtwcli" in words:
        return words[words.index("vtwcli") + 1 :]
    raise AssertionError(f"not a vtw command: {line}")


def _option(args: list[str], *names: str) -> str | None:
    for i, a in enumerate(args):
        for name in names:
            if a == name and i + 1 < len(args):
                return args[i + 1]
            if a.startswith(name + "="):
                return a.split("=", 1)[1]
    return None


def why_not_run(cmd: DocCommand) -> str | None:
    """None when the line can run offline here; else what it needs."""
    words = shlex.split(cmd.line, comments=True)
    if any(w in ("torchrun", "accelerate") for w in words):
        return "several processes"
    args = vtw_args(cmd.line)
    if not args or args[0] in ("--help", "-h", "--version"):
        return None
    model = _option(args, "--model", "-m")
    # an error example (an unknown alias, a model not in the cache, a profile for another model)
    # stops before any weight is read; a random-init one could build the full model, so not that
    error_before_weights = cmd.shows_error and "--random-init" not in args
    if model not in RUNNABLE_MODELS and not ("--random-init" in args and "--shrink" in args) and not error_before_weights:
        return "weights"
    if _option(args, "--data", "-d") not in RUNNABLE_DATA or _option(args, "--data-path") is not None:
        return "a dataset"
    profile = _option(args, "--profile", "-p")
    if profile is not None and profile.startswith("/path/"):
        return "a placeholder path"
    if profile is not None and profile != "profiles/testbed.yaml" and not error_before_weights:
        return "weights"
    if "cuda" in (_option(args, "--device") or "") or "--device-map" in args:
        return "a GPU"
    if (_option(args, "--attn") or "") == "flash_attention_2" and not cmd.shows_error:
        return "a GPU"
    for name in ("--image", "-i", "--video", "--input"):
        value = _option(args, name)
        if value is not None and value.startswith("/path/"):
            return "a placeholder path"
        if value is not None and not (_scratch_source(value)):
            return f"the file {value}"
    return None


def _scratch_source(value: str) -> Path | None:
    """Where a relative input path of the docs comes from: the repository, or docs/examples
    (the pages say their examples ran in a directory holding those files)."""
    for base in (REPO, REPO / "docs" / "examples"):
        if (base / value).exists():
            return base / value
    return None


COMMANDS = collect()


def _param(cmd: DocCommand):
    reason = why_not_run(cmd)
    marks = []
    args = vtw_args(cmd.line)
    if reason is None and args and args[0] in SLOW_COMMANDS:
        marks.append(pytest.mark.slow)
    return pytest.param(cmd, id=cmd.where, marks=marks)


def test_the_docs_quote_commands():
    assert len(COMMANDS) >= 20
    assert any(c.where.startswith("README.md") for c in COMMANDS)


@pytest.mark.parametrize("cmd", [pytest.param(c, id=c.where) for c in COMMANDS])
def test_every_quoted_command_parses(cmd):
    args = vtw_args(cmd.line)
    group = typer.main.get_command(app)
    if not args or args[0] in ("--help", "-h", "--version"):
        return
    assert args[0] in group.commands, f"{cmd.where}: `vtw {args[0]}` is not a command"
    if "--help" in args or "-h" in args:
        return
    command = group.commands[args[0]]
    command.make_context(f"vtw {args[0]}", list(args[1:]))  # raises on an unknown option or a bad value


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """A directory like the one the docs ran in: docs/ (docs/examples also at the top) and profiles/."""
    shutil.copytree(REPO / "docs", tmp_path / "docs")
    for f in (REPO / "docs" / "examples").iterdir():
        shutil.copy(f, tmp_path / f.name)
    shutil.copytree(REPO / "profiles", tmp_path / "profiles")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path


def _distinct(commands):
    """Each distinct command once (a page may quote a line again above its output)."""
    seen, out = set(), []
    for c in commands:
        key = tuple(vtw_args(c.line))
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


RUNNABLE = _distinct(c for c in COMMANDS if why_not_run(c) is None)


def test_most_quoted_commands_run_offline():
    # the quick start and the testbed examples are runnable; what needs weights is the minority
    runnable = [c for c in COMMANDS if why_not_run(c) is None]
    assert len(runnable) >= len(COMMANDS) / 2, [c.where for c in COMMANDS if c not in runnable]
    readme = [c for c in COMMANDS if c.where.startswith("README.md")]
    assert readme and why_not_run(readme[0]) is None


@pytest.mark.parametrize("cmd", [_param(c) for c in RUNNABLE])
def test_every_offline_command_runs(cmd, scratch):
    args = vtw_args(cmd.line)
    result = CliRunner().invoke(app, args)
    assert "Traceback" not in result.output, f"{cmd.where}: {cmd.line}\n{result.output}"
    if cmd.shows_error and result.exit_code == 2:
        errors = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1, f"{cmd.where}: {cmd.line}\n{result.output}"
        return
    assert result.exit_code == 0, f"{cmd.where}: {cmd.line}\nexit {result.exit_code}\n{result.output}"
