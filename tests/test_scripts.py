"""The benchmark and training scripts still parse and import what they name (they are not run in CI)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).resolve().parents[1] / "scripts").glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_imports_resolve(script):
    # every `from vtwcli... import name` inside the script must name something that exists
    import importlib

    tree = ast.parse(script.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vtwcli"):
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name) or importlib.util.find_spec(f"{node.module}.{alias.name}"), (
                    f"{script.name}: {node.module} has no {alias.name}"
                )


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_help(script):
    proc = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage" in proc.stdout.lower()


def test_prefill_layers_runs_and_compares_with_a_plain_forward_of_the_kept_length():
    """The split script on a tiny decoder: the ideal row is a plain forward as long as what VTW keeps."""
    import re

    script = Path(__file__).resolve().parents[1] / "scripts" / "prefill_layers.py"
    proc = subprocess.run([sys.executable, str(script), "--hidden", "64", "--layers", "4", "--repeats", "1",
                           "--threads", "1"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    head = re.search(r"prompt (\d+) tokens \((\d+) kept from layer 2 on\)", proc.stdout)
    assert head, proc.stdout
    prompt, kept = int(head.group(1)), int(head.group(2))
    assert 576 < prompt and 0 < kept < prompt - 576 + 1  # every vision token withdrawn, the text kept
    assert re.search(rf"ideal +layers 2\.\.3 of a plain {kept}-token text-only forward +[\d.]+ ms", proc.stdout)
    assert re.search(r"no engine work after K \(ideal\): [\d.]+ of the baseline", proc.stdout)


def test_vicuna_prompt_tokens_matches_llavas_chunked_rule_with_the_stand_in_tokenizer():
    """With one token per word, the system sentence is 23 tokens (BOS + 23 + "USER:" before the
    image) and whole-prompt and chunk-by-chunk tokenization give the same ids."""
    import re

    script = Path(__file__).resolve().parents[1] / "scripts" / "vicuna_prompt_tokens.py"
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "vision tokens 576; BOS + system sentence + 'USER:' = 25 tokens before the image" in proc.stdout
    rows = re.findall(r"^ *(\d+) +(\d+) +(\d+) +25 ", proc.stdout, re.M)
    assert len(rows) == 6, proc.stdout
    for vtw, llava, chat in rows:
        assert int(vtw) == int(llava) == int(chat) + 23  # the chat template has no system sentence
    assert "identical ids for 6/6" in proc.stdout
