"""`vtw run` end to end on the bundled testbed, through typer's CliRunner."""

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from vtwcli.cli import app
from vtwcli.profiles import ModelRef, Profile, TaskEntry, save_profile

REPO = Path(__file__).resolve().parents[2]
torch.set_num_threads(1)
cli = CliRunner()


def run(*args, input=None):
    return cli.invoke(app, list(map(str, args)), input=input)


@pytest.fixture(scope="module")
def testbed():
    from vtwcli.models import load_model

    return load_model("testbed", device="cpu")


def _reference(testbed, image, prompt, k=None, tokens=2):
    """The answer computed without the runner: prepare/generate, under the engine when K is set."""
    import vtwcli

    inputs = testbed.prepare([prompt], images=[[image]])
    if k is None:
        return testbed.generate(inputs, max_new_tokens=tokens)[0]
    with vtwcli.withdraw(testbed.model, k):
        return testbed.generate(inputs, max_new_tokens=tokens)[0]


def test_one_shot_answers_with_the_testbed(files, testbed):
    res = run("run", "--image", files / "red.png", "--prompt", "what colour is the square ?",
              "--max-new-tokens", 2, "--json", "-")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["model"] == "testbed" and out["method"] == "baseline" and out["k"] is None
    assert out["answer"] == _reference(testbed, files / "red.png", "what colour is the square ?")
    assert out["latency_s"] > 0


def test_a_calibrated_profile_in_profiles_is_used_when_no_k_is_given(files, testbed):
    # `vtw calibrate` writes profiles/<model>.yaml; the next `vtw run` picks its K up by itself
    (files / "profiles").mkdir()
    save_profile(
        Profile(model=ModelRef(alias="testbed", id="vtwcli/testbed", num_layers=6), tasks={"shapes": TaskEntry(k=2)}),
        files / "profiles" / "testbed.yaml",
    )
    res = run("run", "--image", files / "red.png", "--prompt", "what colour is the square ?",
              "--max-new-tokens", 2, "--json", "-")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["method"] == "vtw" and out["k"] == 2
    assert out["answer"] == _reference(testbed, files / "red.png", "what colour is the square ?", k=2)
    # an explicit --method baseline still wins over the file
    res = run("run", "--image", files / "red.png", "--prompt", "x", "--method", "baseline", "--json", "-")
    assert json.loads(res.stdout.strip().splitlines()[-1])["k"] is None


def test_one_shot_with_k_uses_the_engine(files, testbed):
    res = run("run", "--image", files / "red.png", "--prompt", "what colour is the square ?", "--k", 2,
              "--max-new-tokens", 2, "--json", "-")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert (out["k"], out["method"]) == (2, "vtw")
    assert out["answer"] == _reference(testbed, files / "red.png", "what colour is the square ?", k=2)


def test_profile_task_picks_k(files, tmp_path):
    prof = Profile(
        model=ModelRef(alias="testbed", id="vtwcli/testbed", num_layers=6, architecture="llava"),
        tasks={"shapes": TaskEntry(k=4), "pope": TaskEntry(k=3)}, default_task="pope",
    )
    path = save_profile(prof, tmp_path / "p.yaml")
    base = ["run", "--profile", path, "--image", files / "white.png", "--prompt", "hi", "--max-new-tokens", 1, "--json", "-"]
    assert json.loads(run(*base, "--task", "shapes").stdout.splitlines()[-1])["k"] == 4
    assert json.loads(run(*base).stdout.splitlines()[-1])["k"] == 3  # the profile's default task
    assert json.loads(run(*base, "--k", 5).stdout.splitlines()[-1])["k"] == 5  # --k overrides
    assert json.loads(run(*base, "--method", "baseline").stdout.splitlines()[-1])["method"] == "baseline"
    res = run(*base, "--task", "mme")
    assert res.exit_code == 2 and "has no K for task 'mme'" in res.output


def test_batch_keeps_going_and_reports_bad_lines(files, testbed):
    out = files / "a.jsonl"
    res = run("run", "--input", files / "q.jsonl", "--output", out, "--k", 4, "--max-new-tokens", 2)
    assert res.exit_code == 2  # some lines failed
    assert "line 2: not valid JSON" in res.output
    assert "line 4: image" in res.output and "missing.png does not exist" in res.output
    assert "5 lines" in res.output and "3 answered, 2 failed" in res.output
    assert "Traceback" not in res.output
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 3, 4, 6]
    assert [r.get("id") for r in rows] == ["q1", None, "q3", "q4", "q6"]
    assert [r["answer"] is None for r in rows] == [False, True, False, True, False]
    assert all(r["k"] == 4 and r["method"] == "vtw" and r["model"] == "testbed" for r in rows)
    assert all("error" in r for r in rows if r["answer"] is None)
    assert rows[2]["answer"] == _reference(testbed, files / "red.png", "what colour is the square ?", k=4)
    assert rows[4]["answer"] == _reference(testbed, files / "red.png", "is there a red circle ?", k=4)
    assert not list(files.glob(".a.jsonl.*"))  # no temporary file left behind


def test_batch_all_good_exits_zero(files):
    (files / "good.jsonl").write_text(json.dumps({"image": "white.png", "prompt": "hi"}) + "\n")
    res = run("run", "--input", files / "good.jsonl", "--output", files / "o.jsonl", "--max-new-tokens", 1)
    assert res.exit_code == 0, res.output
    assert len((files / "o.jsonl").read_text().splitlines()) == 1


def test_interrupted_batch_writes_nothing(files, monkeypatch):
    from vtwcli import runner as runner_mod

    calls = {"n": 0}
    real = runner_mod.Runner.answer

    def flaky(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, *a, **kw)

    monkeypatch.setattr(runner_mod.Runner, "answer", flaky)
    out = files / "a.jsonl"
    out.write_text("previous answers\n")
    res = run("run", "--input", files / "q.jsonl", "--output", out, "--max-new-tokens", 1)
    assert res.exit_code != 0
    assert out.read_text() == "previous answers\n"  # the old file is intact
    assert not list(files.glob(".a.jsonl.*"))


def test_chat_answers_each_turn(files, testbed):
    res = run("run", "--image", files / "red.png", "--k", 3, "--max-new-tokens", 2,
              input="what colour is the square ?\nhow many shapes are there ?\n\n")
    assert res.exit_code == 0, res.output
    replies = [line.split("model> ", 1)[1] for line in res.stdout.splitlines() if "model> " in line]
    assert len(replies) == 2
    assert replies[0].strip() == _reference(testbed, files / "red.png", "what colour is the square ?", k=3)


def _one_line_error(res, *needles):
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, res.output
    for n in needles:
        assert n in errors[0], errors[0]


def test_bad_inputs_get_one_clear_line(files, tmp_path):
    img = files / "white.png"
    cases = [
        (["--image", files / "nope.png", "--prompt", "x"], ["nope.png does not exist"]),
        (["--image", files / "corrupt.png", "--prompt", "x"], ["corrupt.png is not an image file or is corrupt"]),
        (["--image", files, "--prompt", "x"], ["is a directory"]),
        (["--profile", tmp_path / "none.yaml", "--image", img, "--prompt", "x"], ["none.yaml does not exist"]),
        (["--model", "llava-1.5-7", "--image", img, "--prompt", "x"], ["unknown model alias", "llava-1.5-7b"]),
        (["--model", "llava-1.5-7b", "--image", img, "--prompt", "x"],
         ["not in the local Hugging Face cache", "huggingface-cli download llava-hf/llava-1.5-7b-hf"]),
        (["--attn", "flash_attention_2", "--image", img, "--prompt", "x"], ["flash"]),
        (["--k", 7, "--image", img, "--prompt", "x"], ["K=7 is outside 1..6"]),
        (["--k", 0, "--image", img, "--prompt", "x"], ["--k must be at least 1"]),
        (["--method", "magic", "--image", img, "--prompt", "x"], ["--method must be one of"]),
        (["--task", "pope", "--image", img, "--prompt", "x"], ["--task picks a K from a profile"]),
        (["--input", files / "q.jsonl"], ["--input needs --output"]),
        (["--output", tmp_path / "o.jsonl", "--prompt", "x"], ["--output goes with --input"]),
        (["--input", files / "none.jsonl", "--output", tmp_path / "o.jsonl"], ["none.jsonl does not exist"]),
        (["--input", files / "q.jsonl", "--output", tmp_path / "no" / "o.jsonl"], ["does not exist; create it"]),
        (["--video", files / "clip.mp4", "--prompt", "x"], ["clip.mp4 does not exist"]),
        ([], ["give --prompt TEXT"]),
    ]
    for args, needles in cases:
        _one_line_error(run("run", *args), *needles)
    assert not (tmp_path / "o.jsonl").exists()


def test_malformed_and_foreign_profiles(files, tmp_path):
    img = files / "white.png"
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: vtw-profile\ntasks: [unclosed\n")
    _one_line_error(run("run", "--profile", bad, "--image", img, "--prompt", "x"), "not valid YAML")
    # a profile made for LLaVA-1.5-7B (K=16 of 32) used on the 6-layer testbed
    _one_line_error(
        run("run", "--profile", REPO / "profiles/llava15_7b.yaml", "--model", "testbed", "--image", img, "--prompt", "x"),
        "K=16", "has 6 decoder layers",
    )


def test_video_on_an_image_model(files):
    import av
    import numpy as np

    path = files / "clip.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=4)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for i in range(4):
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.full((32, 32, 3), 60 * i, np.uint8))):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    _one_line_error(run("run", "--video", path, "--prompt", "x"), "does not take videos")


def test_method_fastv_mask_runs_fastvs_masking_implementation(files, testbed):
    import vtwcli

    prompt = "what colour is the square ?"
    res = run("run", "--image", files / "red.png", "--prompt", prompt, "--method", "fastv-mask", "--k", 2,
              "--max-new-tokens", 2, "--json", "-")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert (out["k"], out["method"]) == (2, "fastv-mask")
    inputs = testbed.prepare([prompt], images=[[files / "red.png"]])
    with vtwcli.withdraw(testbed.model, 2, method="fastv-mask", ratio=0.5) as handle:
        assert out["answer"] == testbed.generate(inputs, max_new_tokens=2)[0]
        assert handle.last_prefill.kept[0] < handle.last_prefill.length[0]  # it masked tokens out
