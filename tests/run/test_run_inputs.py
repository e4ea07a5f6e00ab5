"""Inputs a new user tries with `vtw run`: a prompt without an image, words the testbed does not
know, a picture unlike its training; and --json FILE as in every other command."""

import json

import pytest
import torch
from typer.testing import CliRunner

from vtwcli.cli import app
from vtwcli.models.registry import TESTBED_SCOPE
from vtwcli.runner import TEXT_ONLY_NOTICE, Runner, RunSettings

torch.set_num_threads(1)
cli = CliRunner()


def run(*args):
    return cli.invoke(app, list(map(str, args)))


@pytest.fixture(scope="module")
def testbed():
    from vtwcli.models import load_model

    return load_model("testbed", device="cpu")


def test_prompt_without_image_is_answered_text_only_by_the_plain_model(testbed):
    prompt = "How many shapes are there?"
    res = run("run", "--k", 3, "--prompt", prompt, "--max-new-tokens", 3, "--json", "-")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    # the reference: the plain model, no engine, the same text-only chat prompt
    reference = testbed.generate(testbed.prepare([prompt]), max_new_tokens=3)[0]
    assert out["answer"] == reference
    assert out["method"] == "baseline" and out["k"] is None and out["note"] == TEXT_ONLY_NOTICE
    assert res.stderr.count(TEXT_ONLY_NOTICE) == 1
    assert "error" not in res.stderr.lower()


def test_text_only_then_image_reattaches_the_engine(testbed, files):
    import vtwcli

    prompt = "What colour is the square?"
    with Runner(RunSettings(k=1, max_new_tokens=2), loaded=testbed) as runner:
        text_only = runner.answer(prompt)
        with_image = runner.answer(prompt, images=[files / "red.png"])
    assert text_only.text_only and text_only.method == "baseline"
    assert not with_image.text_only and with_image.method == "vtw" and with_image.k == 1
    inputs = testbed.prepare([prompt], images=[[files / "red.png"]])
    with vtwcli.withdraw(testbed.model, 1):
        withdrawn_logits = testbed.model(**inputs).logits[0, -1]
        withdrawn = testbed.generate(inputs, max_new_tokens=2)[0]
    full_logits = testbed.model(**inputs).logits[0, -1]
    assert not torch.allclose(withdrawn_logits, full_logits)  # K=1 does change the model's output
    assert with_image.text == withdrawn


def test_unknown_words_are_named_and_the_testbed_scope_said_once(files):
    res = run("run", "--image", files / "red.png", "--prompt", "What colour is the sqaure in this photo?",
              "--max-new-tokens", 1)  # fmt: skip
    assert res.exit_code == 0, res.output
    warnings = [ln for ln in res.stderr.splitlines() if ln.startswith("warning:")]
    assert warnings == ["warning: testbed does not know the words 'sqaure', 'this', 'photo?' (read as <unk>)"]
    assert res.stderr.count(TESTBED_SCOPE) == 1


def test_known_words_get_no_warning(files):
    res = run("run", "--image", files / "red.png", "--prompt", "What colour is the square?", "--max-new-tokens", 1)
    assert res.exit_code == 0 and "warning" not in res.stderr


def test_batch_names_unknown_words_per_line_and_says_the_scope_once(files):
    lines = [{"id": "a", "image": "red.png", "prompt": "What colour is the square?"},
             {"id": "b", "image": "red.png", "prompt": "What colour is the dog?"}]  # fmt: skip
    (files / "w.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    res = run("run", "--input", files / "w.jsonl", "--output", files / "o.jsonl", "--max-new-tokens", 1)
    assert res.exit_code == 0, res.output
    assert "line 2: warning: testbed does not know the word 'dog?' (read as <unk>)" in res.stderr
    assert "line 1: warning" not in res.stderr
    assert res.stderr.count(TESTBED_SCOPE) == 1
    rows = [json.loads(x) for x in (files / "o.jsonl").read_text().splitlines()]
    assert "warnings" not in rows[0] and rows[1]["warnings"]


def test_run_json_takes_a_file(files):
    out = files / "answer.json"
    res = run("run", "--image", files / "red.png", "--prompt", "What colour is the square?",
              "--max-new-tokens", 1, "--json", out)  # fmt: skip
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["answer"] == res.stdout.strip() and data["method"] in ("vtw", "baseline")


def test_run_json_is_refused_with_input(files):
    res = run("run", "--input", files / "q.jsonl", "--output", files / "o.jsonl", "--json", files / "x.json")
    assert res.exit_code == 2 and "--json writes one answer" in res.output
