"""`vtw bench --batch-size` and `--memory-budget` end to end on the bundled testbed."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from vtwcli.bench import bench, runner
from vtwcli.cli import app

METHODS = "baseline,fastv,vtw,rand"


def _cli(args):
    return CliRunner().invoke(app, args, env={"HF_HUB_OFFLINE": "1", "COLUMNS": "250"})


@pytest.fixture(scope="module")
def testbed():
    from vtwcli.models import load_model

    return load_model("testbed", device="cpu")


def test_batched_answers_equal_unbatched_for_every_method(testbed):
    one = bench(testbed, data="shapes", methods=METHODS, k=4, limit=8, warmup=0, log_samples=True)
    four = bench(testbed, data="shapes", methods=METHODS, k=4, limit=8, warmup=0, log_samples=True, batch_size=4)
    assert four.settings["batch_size"] == 4 and four.settings["mode"] == "batch"
    # the batches really were left-padded: prompts of different lengths share a call
    lengths = [s["prompt_tokens"] for s in four.samples]
    assert len(set(lengths[:4])) > 1 and len(set(lengths[4:])) > 1
    for method in METHODS.split(","):
        a, b = one.row(method), four.row(method)
        assert a.error is None and b.error is None
        assert b.samples == 8
        assert a.accuracy == b.accuracy and a.metrics == b.metrics
        for s1, s6 in zip(one.samples, four.samples, strict=True):
            m1, m6 = s1["methods"][method], s6["methods"][method]
            assert (m1["reply"], m1["parsed"]) == (m6["reply"], m6["parsed"]), (method, s1["id"])
            assert m1["kept_tokens"] == m6["kept_tokens"]
    # withdrawal is real in both: layers >= K held fewer tokens than the prompt
    for res in (one, four):
        for s in res.samples:
            assert s["methods"]["vtw"]["kept_tokens"] == s["prompt_tokens"] - s["vision_tokens"]


def test_batch_throughput_columns_follow_from_the_calls(testbed):
    res = bench(testbed, data="shapes", methods="baseline,vtw", k=4, limit=8, warmup=0, log_samples=True,
                batch_size=4, max_new_tokens=3)  # fmt: skip
    for method in ("baseline", "vtw"):
        row = res.row(method)
        groups = [res.samples[:4], res.samples[4:]]
        seconds = [g[0]["methods"][method]["e2e_ms"] / 1e3 for g in groups]
        assert all(s["methods"][method]["e2e_ms"] == g[0]["methods"][method]["e2e_ms"] for g in groups for s in g)
        tokens = [sum(s["methods"][method]["new_tokens"] for s in g) for g in groups]
        assert row.samples_per_s == pytest.approx(8 / sum(seconds))
        assert row.tokens_per_s == pytest.approx(sum(tokens) / sum(seconds))
        assert row.tokens_per_s_ratio_ci95 is not None  # two batches: an interval
    base_tps = [sum(s["methods"]["baseline"]["new_tokens"] for s in g) / (g[0]["methods"]["baseline"]["e2e_ms"] / 1e3)
                for g in (res.samples[:4], res.samples[4:])]  # fmt: skip
    vtw_tps = [sum(s["methods"]["vtw"]["new_tokens"] for s in g) / (g[0]["methods"]["vtw"]["e2e_ms"] / 1e3)
               for g in (res.samples[:4], res.samples[4:])]  # fmt: skip
    expect = ((vtw_tps[0] / base_tps[0]) + (vtw_tps[1] / base_tps[1])) / 2  # median of two per-batch ratios
    assert res.row("vtw").tokens_per_s_ratio == pytest.approx(expect)
    assert res.row("baseline").tokens_per_s_ratio == pytest.approx(1.0)
    # the paired latency ratios pair batches, not the samples that share a batch's time
    assert res.paired["vtw/baseline"]["e2e"]["n"] == 2
    assert "tok/s x base" in res.to_markdown()


def test_budget_search_survives_out_of_memory_and_reports_it(testbed, monkeypatch):
    # a fake device: generate() runs out of memory above 3 rows for the baseline, 6 for VTW
    real = runner._run_batch
    limits = {"baseline": 3, "vtw": 6}
    tried = []

    def fake(loaded, spec, inputs, gen, clock=None):
        rows = int(inputs["input_ids"].shape[0])
        tried.append((spec.name, rows))
        if rows > limits[spec.name]:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {rows} GiB")
        return real(loaded, spec, inputs, gen, clock)

    monkeypatch.setattr(runner, "_run_batch", fake)
    res = bench(testbed, data="shapes", methods="baseline,vtw", k=4, limit=8, max_new_tokens=2,
                memory_budget="8GiB", repeats=2, warmup=0)  # fmt: skip
    base, vtw = res.row("baseline"), res.row("vtw")
    assert (base.max_batch, vtw.max_batch) == (3, 6)
    assert vtw.max_batch_ratio == pytest.approx(6 / 3)
    for row, limit in ((base, 3), (vtw, 6)):
        fails = [t for t in row.search["tries"] if not t["fits"]]
        assert fails and all(t["batch"] > limit and "out of memory" in t["reason"] for t in fails)
        assert row.tokens_per_s > 0 and row.samples_per_s > 0  # the run went on to the timed rounds
        assert row.search["prediction"]["max_batch"] is not None
    assert vtw.tokens_per_s_ratio is not None and vtw.tokens_per_s_ratio_ci95 is not None  # two rounds
    assert any("baseline: batch" in n and "did not fit" in n for n in res.notices)
    # timed rounds ran each row at its own max batch
    assert ("baseline", 3) in tried[-4:] and ("vtw", 6) in tried[-4:]
    text = res.to_markdown()
    assert "max batch" in text and "| vtw" in text


def test_budget_below_the_process_memory_gives_zero_not_a_crash(tmp_path):
    out = tmp_path / "b.json"
    res = _cli(["bench", "--limit", "2", "--max-new-tokens", "1", "--methods", "baseline,vtw", "--k", "4",
                "--memory-budget", "20MiB", "--json", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["settings"]["mode"] == "memory-budget"
    for row in data["rows"]:
        assert row["max_batch"] == 0
        assert all(t["reason"].startswith("over budget") for t in row["search"]["tries"])
    assert any("already holds" in n for n in data["notices"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--memory-budget", "twenty"], "is not a size"),
        (["--memory-budget", "20"], "has no unit"),
        (["--memory-budget", "1MiB"], "below the"),
    ],
)
def test_bad_throughput_options_are_one_line_exit_2(args, message):
    res = _cli(["bench", "--limit", "1", "--max-new-tokens", "1", *args])
    assert res.exit_code == 2, res.output
    lines = [x for x in res.output.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in res.output


@pytest.fixture
def loading_is_a_failure(monkeypatch):
    import vtwcli.models
    import vtwcli.models.loading as loading

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the budget was checked")

    monkeypatch.setattr(vtwcli.models, "load_model", refuse)
    monkeypatch.setattr(loading, "from_config", refuse)


def test_budget_below_the_weights_is_refused_before_loading(loading_is_a_failure):
    # the testbed (its directory's config.json) and a 7B random-init alias (its shipped config)
    res = _cli(["bench", "--limit", "1", "--max-new-tokens", "1", "--memory-budget", "1MiB"])
    assert res.exit_code == 2, res.output
    lines = [x for x in res.output.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --memory-budget 1.00 MiB is below the") and "testbed" in lines[0]
    res = _cli(["bench", "--model", "llava-1.5-7b", "--random-init", "--device", "cpu", "--dtype", "bf16",
                "--memory-budget", "12GiB"])  # fmt: skip
    assert res.exit_code == 2, res.output
    lines = [x for x in res.output.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and "is below the" in lines[0] and "llava-1.5-7b" in lines[0], res.output
    # LLaVA-1.5-7B has 7,063,427,072 parameters (its model card): 2 bytes each in bf16
    shown = float(lines[0].split("is below the ")[1].split(" GiB")[0]) * 2**30
    assert abs(shown - 7_063_427_072 * 2) / (7_063_427_072 * 2) < 0.01
    with pytest.raises(Exception, match="is below the"):
        bench("llava-1.5-7b", random_init=True, device="cpu", dtype="bf16", memory_budget="12GiB")
