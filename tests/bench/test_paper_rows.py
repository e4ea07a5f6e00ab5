"""`vtw bench --k` lists and the paper's ablation rows (Figure 8a, Tables 1 and 2), each checked
against runs made here by hand on the same testbed samples."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from vtwcli.bench import bench
from vtwcli.bench.flops import prefill_tflops
from vtwcli.bench.runner import default_k_range, parse_k_list, parse_k_range
from vtwcli.cli import app
from vtwcli.engine import withdraw
from vtwcli.errors import KOutOfRangeError

runner = CliRunner()
SHIPPED_PROFILE = Path(__file__).resolve().parents[2] / "profiles" / "testbed.yaml"
FAST = dict(limit=3, max_new_tokens=2, warmup=0, device="cpu", log_samples=True)


@pytest.fixture(scope="module")
def testbed():
    torch.set_num_threads(1)
    from vtwcli.models import load_model

    return load_model("testbed", device="cpu", dtype="fp32")


@pytest.fixture(scope="module")
def shapes():
    from vtwcli.data import get_task

    return get_task("shapes", limit=3, seed=0)


def _reply(loaded, inputs, k=None, method="vtw", seed=0, positions="keep"):
    """A greedy reply made here, with the engine attached by hand when ``k`` is given."""
    gen = {"max_new_tokens": 2, "do_sample": False, "pad_token_id": loaded.tokenizer.pad_token_id}
    with torch.inference_mode():
        if k is None:
            out = loaded.model.generate(**inputs, **gen)
        else:
            with withdraw(loaded.model, k, method=method, seed=seed, positions=positions):
                out = loaded.model.generate(**inputs, **gen)
    return loaded.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def test_parse_k_list_and_range():
    assert parse_k_list("2,4,8,16") == (2, 4, 8, 16)
    assert parse_k_list("1-6") == (1, 2, 3, 4, 5, 6)
    assert parse_k_list("1-3,8") == (1, 2, 3, 8)
    assert parse_k_list(16) == (16,) and parse_k_list([3, 5]) == (3, 5) and parse_k_list(None) is None
    for bad, msg in (("6-1", "runs backwards"), ("a", "a list or a range"), ("0", "at least 1"), ("2,2", "twice"),
                     ("", "a list or a range")):  # fmt: skip
        with pytest.raises(KOutOfRangeError, match=msg):
            parse_k_list(bad)
    assert parse_k_range("8-24") == (8, 24)
    with pytest.raises(KOutOfRangeError, match="lo-hi"):
        parse_k_range("24")
    # the paper's [8, 24] of 32 layers, scaled: LLaVA-1.5-13B's 40 layers, the 6-layer testbed
    assert default_k_range(32) == (8, 24) and default_k_range(40) == (10, 30) and default_k_range(6) == (2, 5)


def test_k_list_runs_one_row_per_k_on_the_same_samples(testbed, shapes):
    result = bench(testbed, "shapes", methods="baseline,vtw", k="1-3", **FAST)
    assert [r.method for r in result.rows] == ["baseline", "vtw@1", "vtw@2", "vtw@3"]
    assert [r.k for r in result.rows] == [None, 1, 2, 3] and result.settings["k_list"] == [1, 2, 3]
    s, v = result.prompt["avg_prompt_tokens"], result.prompt["avg_vision_tokens"]
    base = result.row("baseline").tflops
    for k in (1, 2, 3):
        row = result.row(f"vtw@{k}")
        want = prefill_tflops("vtw", s=s, n_vis=v, hidden_size=128, num_layers=6, k=k)
        assert row.tflops == pytest.approx(want) and row.tflops_ratio == pytest.approx(want / base)
    for i, sample in enumerate(result.samples):
        inputs = testbed.prepare(shapes.prompt(shapes[i]), images=shapes.images(shapes[i]))
        assert sample["methods"]["baseline"]["reply"] == _reply(testbed, inputs)
        for k in (1, 2, 3):
            entry = sample["methods"][f"vtw@{k}"]
            assert entry["reply"] == _reply(testbed, inputs, k=k)
            assert entry["kept_tokens"] == entry["prompt_tokens"] - entry["vision_tokens"]
            # each row withdrew at its own K: layers < K cache the vision tokens, layers >= K do not
            kv = entry["kv_tokens_per_layer"]
            assert kv[k - 1] - kv[k] == entry["vision_tokens"] > 0


def test_noimage_and_white_rows_equal_hand_built_inputs(testbed, shapes):
    result = bench(testbed, "shapes", methods="baseline,noimage,white", k=3, **FAST)
    noimage, white = result.row("noimage"), result.row("white")
    assert noimage.k is None and white.k == 3 and white.kind == "white"
    image_id = testbed.arch.image_token_id(testbed.config)
    for i, sample in enumerate(result.samples):
        record = shapes[i]
        plain = testbed.prepare(shapes.prompt(record))
        assert int((plain["input_ids"] == image_id).sum()) == 0
        got = sample["methods"]["noimage"]
        assert got["vision_tokens"] == 0 and got["prompt_tokens"] == plain["input_ids"].shape[1]
        assert got["reply"] == _reply(testbed, plain)
        images = shapes.images(record)
        blank = [Image.new("RGB", im.size, (255, 255, 255)) for im in images]
        white_inputs = testbed.prepare(shapes.prompt(record), images=blank)
        assert sample["methods"]["white"]["reply"] == _reply(testbed, white_inputs, k=3)
        assert sample["methods"]["white"]["vision_tokens"] == sample["vision_tokens"] > 0
    # the noimage row is costed at its own prompt (no vision tokens)
    s = statistics.fmean(x["methods"]["noimage"]["prompt_tokens"] for x in result.samples)
    assert noimage.tflops == pytest.approx(prefill_tflops("baseline", s=s, n_vis=0, hidden_size=128, num_layers=6))
    # not vacuous: the white image changes answers the real image gets right
    assert [x["methods"]["white"]["reply"] for x in result.samples] != [x["methods"]["baseline"]["reply"]
                                                                        for x in result.samples]


def test_random_k_draws_k_per_sample_in_range_seeded(testbed):
    a = bench(testbed, "shapes", methods="random-k", k_range="1-5", seed=3, **dict(FAST, limit=3))
    b = bench(testbed, "shapes", methods="random-k", k_range="1-5", seed=3, **dict(FAST, limit=3))
    ks = [s["methods"]["random-k"]["k"] for s in a.samples]
    assert ks == [s["methods"]["random-k"]["k"] for s in b.samples]
    assert all(1 <= k <= 5 for k in ks) and a.row("random-k").k_range == [1, 5]
    other = [bench(testbed, "shapes", methods="random-k", k_range="1-5", seed=seed, **FAST) for seed in (4, 5)]
    assert any([s["methods"]["random-k"]["k"] for s in o.samples] != ks for o in other)
    from vtwcli.data import get_task

    task = get_task("shapes", limit=3, seed=3)  # the seed draws the samples too
    for i, sample in enumerate(a.samples):
        assert sample["id"] == str(task[i].id)
        inputs = testbed.prepare(task.prompt(task[i]), images=task.images(task[i]))
        assert sample["methods"]["random-k"]["reply"] == _reply(testbed, inputs, k=ks[i])
    s, v = a.prompt["avg_prompt_tokens"], a.prompt["avg_vision_tokens"]
    want = statistics.fmean(prefill_tflops("vtw", s=s, n_vis=v, hidden_size=128, num_layers=6, k=k) for k in ks)
    assert a.row("random-k").tflops == pytest.approx(want)


def test_rand_discards_as_many_tokens_as_there_are_vision_tokens_at_k(testbed):
    result = bench(testbed, "shapes", methods="baseline,rand", k=3, **FAST)
    for sample in result.samples:
        base, rand = sample["methods"]["baseline"], sample["methods"]["rand"]
        assert rand["kept_tokens"] == rand["prompt_tokens"] - rand["vision_tokens"]
        # the caches agree: layers >= K hold exactly the vision count fewer tokens than layers < K
        kv = rand["kv_tokens_per_layer"]
        assert kv[:3] == base["kv_tokens_per_layer"][:3]
        assert all(kv[j] == kv[0] - rand["vision_tokens"] for j in range(3, 6))


def test_positions_keep_and_rearrange_rows(testbed, shapes, monkeypatch):
    import vtwcli.engine

    seen = []
    real = vtwcli.engine.withdraw

    def spy(model, k, **kwargs):
        seen.append(kwargs.get("positions", "keep"))
        return real(model, k, **kwargs)

    monkeypatch.setattr(vtwcli.engine, "withdraw", spy)
    result = bench(testbed, "shapes", methods="baseline,vtw", k=3, positions="keep,rearrange", **FAST)
    assert [r.method for r in result.rows] == ["baseline", "vtw", "vtw+rearrange"]
    assert [r.positions for r in result.rows] == [None, "keep", "rearrange"]
    assert seen.count("rearrange") == seen.count("keep") == 3  # every sample once (no warm-up here)
    monkeypatch.setattr(vtwcli.engine, "withdraw", real)
    for i, sample in enumerate(result.samples):
        inputs = testbed.prepare(shapes.prompt(shapes[i]), images=shapes.images(shapes[i]))
        assert sample["methods"]["vtw+rearrange"]["reply"] == _reply(testbed, inputs, k=3, positions="rearrange")
        assert sample["methods"]["vtw"]["reply"] == _reply(testbed, inputs, k=3)
    assert result.settings["positions"] == ["keep", "rearrange"]


def test_cli_k_list_plot_and_profile_curve(tmp_path):
    png, js = tmp_path / "acc.png", tmp_path / "r.json"
    res = runner.invoke(app, ["bench", "--methods", "baseline,vtw", "--k", "1,2", "--limit", "2", "--max-new-tokens",
                              "2", "--warmup", "0", "--device", "cpu", "--plot", str(png), "--json", str(js),
                              "--profile", str(SHIPPED_PROFILE)], env={"COLUMNS": "250"})  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "vtw@1" in res.output and "vtw@2" in res.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(js.read_text())
    assert [r["method"] for r in data["rows"]] == ["baseline", "vtw@1", "vtw@2"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--k", "1-9"], "--k=7,8,9 are outside 1..6"),
        (["--k", "2,7"], "--k=7 is outside 1..6"),
        (["--k", "0,2"], "--k must be at least 1"),
        (["--k", "x"], "a list or a range"),
        (["--methods", "baseline,blank"], "unknown method 'blank'"),
        (["--methods", "random-k", "--k-range", "4-9"], "--k-range=9 is outside 1..6"),
        (["--methods", "random-k", "--k-range", "5"], "lo-hi"),
        (["--methods", "baseline,fastv", "--plot", "a.png"], "include vtw in --methods"),
        (["--positions", "shuffle"], "--positions takes keep, rearrange"),
        (["--positions", "keep,keep"], "lists a policy twice"),
    ],
)
def test_cli_bad_k_lists_and_ablations_are_one_line(args, message):
    res = runner.invoke(app, ["bench", "--limit", "1", "--device", "cpu", *args])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], res.output
