"""`vtw calibrate`, `vtw bench` and `vtw run --input` under torchrun (2 ranks, gloo on CPU).

Each data-parallel run is compared with the same command run in one process: the results
must be the same (K, curve, accuracy, answers), every sample processed once, and the
world size recorded. A rank that fails must end the run with one clear message and a
non-zero exit, not a hang (every subprocess has a timeout).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import pytest

TIMEOUT = 240  # a hang shows up as a TimeoutExpired failure, not a stuck CI job


def _env(**extra):
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "VTW_DIST_TIMEOUT": "120", **extra}


def _torchrun(args, cwd, script=None, **env):
    target = [str(script)] if script is not None else ["-m", "vtwcli"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           *target, *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(**env), cwd=cwd, timeout=TIMEOUT)


def _single(args, cwd):
    cmd = [sys.executable, "-m", "vtwcli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=cwd, timeout=TIMEOUT)


@pytest.mark.slow
def test_calibrate_on_two_ranks_equals_one_process(tmp_path):
    args = ["calibrate", "--samples", "5", "--seed", "2", "--no-save"]
    one = _single([*args, "--json", "one.json"], tmp_path)
    two = _torchrun([*args, "--json", "two.json"], tmp_path)
    assert one.returncode == 0, one.stderr[-2000:]
    assert two.returncode == 0, two.stderr[-3000:]
    a = json.loads((tmp_path / "one.json").read_text())
    b = json.loads((tmp_path / "two.json").read_text())
    assert (a["world_size"], b["world_size"]) == (1, 2)
    assert b["calibration"]["world_size"] == 2
    assert b["sample_ids"] == a["sample_ids"] and len(set(b["sample_ids"])) == 5
    assert b["k"] == a["k"]
    assert a["curve"].keys() == b["curve"].keys()
    for k in a["curve"]:
        # the gathered per-sample values, in the same order, and their mean is the curve
        assert b["per_sample"][k] == pytest.approx(a["per_sample"][k], rel=1e-5, abs=1e-9)
        assert b["curve"][k]["mean"] == pytest.approx(math.fsum(b["per_sample"][k]) / 5, rel=1e-9)
        assert b["curve"][k]["mean"] == pytest.approx(a["curve"][k]["mean"], rel=1e-5, abs=1e-9)
    assert b["mean_prompt_length"] == a["mean_prompt_length"]
    # only rank 0 printed the result
    assert two.stdout.count("K = ") == 1, two.stdout


@pytest.mark.slow
def test_bench_on_two_ranks_scores_every_sample_once(tmp_path):
    args = ["bench", "--limit", "5", "--max-new-tokens", "4", "--warmup", "0", "--methods", "baseline,vtw",
            "--k", "3", "--log-samples"]  # fmt: skip
    one = _single([*args, "--json", "one.json"], tmp_path)
    two = _torchrun([*args, "--json", "two.json"], tmp_path)
    assert one.returncode == 0, one.stderr[-2000:]
    assert two.returncode == 0, two.stderr[-3000:]
    a = json.loads((tmp_path / "one.json").read_text())
    b = json.loads((tmp_path / "two.json").read_text())
    assert (a["settings"]["world_size"], b["settings"]["world_size"]) == (1, 2)
    assert [s["id"] for s in b["samples"]] == [s["id"] for s in a["samples"]]
    assert len({s["id"] for s in b["samples"]}) == 5
    # strided shares: rank r ran samples r, r+2, ...; each sample exactly once
    assert [s["rank"] for s in b["samples"]] == [0, 1, 0, 1, 0]
    assert [e["samples"] for e in b["environment"]["ranks"]] == [3, 2]
    for ra, rb in zip(a["rows"], b["rows"], strict=True):
        assert rb["method"] == ra["method"]
        assert rb["samples"] == ra["samples"] == 5
        assert rb["accuracy"] == ra["accuracy"] and rb["metrics"] == ra["metrics"]
        assert rb["agreement"] == ra["agreement"]
        assert rb["kv_bytes_per_sample"] == ra["kv_bytes_per_sample"]
        assert [p["samples"] for p in rb["per_rank"]] == [3, 2]
        assert rb["e2e_ms"]["n"] == 5  # pooled over both ranks
        assert all(p["e2e_ms"]["n"] == p["samples"] for p in rb["per_rank"])
    for sa, sb in zip(a["samples"], b["samples"], strict=True):
        for m in ("baseline", "vtw"):
            assert sb["methods"][m]["reply"] == sa["methods"][m]["reply"]
    assert "2 ranks shared 5 samples" in two.stdout


@pytest.mark.slow
def test_run_input_on_two_ranks_writes_the_same_answers(tmp_path):
    from PIL import Image

    lines = []
    for i, colour in enumerate([(220, 20, 20), (20, 20, 220), (20, 160, 20), (200, 200, 20), (255, 255, 255)]):
        img = Image.new("RGB", (72, 72), (255, 255, 255))
        img.paste(colour, (20, 20, 52, 52))
        img.save(tmp_path / f"im{i}.png")
        lines.append(json.dumps({"id": f"q{i}", "image": f"im{i}.png", "prompt": "what colour is the square ?"}))
    (tmp_path / "q.jsonl").write_text("\n".join(lines) + "\n")
    args = ["run", "--k", "3", "--max-new-tokens", "4", "--input", "q.jsonl"]
    one = _single([*args, "--output", "one.jsonl"], tmp_path)
    two = _torchrun([*args, "--output", "two.jsonl"], tmp_path)
    assert one.returncode == 0, one.stderr[-2000:]
    assert two.returncode == 0, two.stderr[-3000:]

    def read(name):
        rows = [json.loads(x) for x in (tmp_path / name).read_text().splitlines()]
        for r in rows:
            assert r.pop("latency_s") > 0
        return rows

    a, b = read("one.jsonl"), read("two.jsonl")
    assert [r["id"] for r in b] == [f"q{i}" for i in range(5)]
    assert b == a
    assert "answered by 2 ranks" in two.stderr
    assert two.stderr.count("wrote 5 lines") == 1


_FAIL_ONE_RANK = textwrap.dedent(
    """
    # Rank 1 runs out of memory in its first sweep; everything else is the real command.
    import os, sys
    import torch
    from vtwcli.calibrate import sweep

    if os.environ["RANK"] == "1":
        def oom(*args, **kwargs):
            raise torch.OutOfMemoryError("simulated: CUDA out of memory. Tried to allocate 20.00 GiB")
        sweep.fast_sweep = oom
    from vtwcli.cli import main
    sys.argv = ["vtw", *sys.argv[1:]]
    main()
    """
)


@pytest.mark.slow
def test_a_failing_rank_ends_the_run_with_one_clear_message(tmp_path):
    script = tmp_path / "fail_one_rank.py"
    script.write_text(_FAIL_ONE_RANK)
    proc = _torchrun(["calibrate", "--samples", "4", "--no-save", "--json", "out.json"], tmp_path, script=script)
    assert proc.returncode != 0
    expected = "1 of 2 ranks failed (rank 1: OutOfMemoryError: simulated: CUDA out of memory"
    assert proc.stderr.count(expected) == 1, proc.stderr[-3000:]  # said once, by rank 0
    assert "nothing was written" in proc.stderr
    assert "Traceback" not in proc.stderr.split("error:")[0][-500:]  # the message, not a traceback, comes first
    assert not (tmp_path / "out.json").exists()


def test_a_mistake_every_rank_makes_is_reported_once(tmp_path):
    """The same user error on every rank: one message, as in one process (exit 2, no hang)."""
    proc = _torchrun(["bench", "--limit", "2", "--k", "99", "--methods", "vtw"], tmp_path)
    assert proc.returncode != 0
    assert proc.stderr.count("all 2 ranks failed: KOutOfRangeError: --k=99 is outside 1..6") == 1, proc.stderr[-3000:]


def test_device_map_with_data_parallel_is_refused(tmp_path):
    from vtwcli.bench import bench
    from vtwcli.distributed import DistContext
    from vtwcli.errors import UsageError

    with pytest.raises(UsageError, match="--device-map splits one model"):
        bench(limit=1, device_map="auto", dist=DistContext(rank=0, world_size=2))


def test_merge_shards_refuses_overlap_and_restores_order():
    from vtwcli.distributed import merge_shards

    assert merge_shards([[(0, "a"), (2, "c")], [(1, "b")]]) == ["a", "b", "c"]
    with pytest.raises(RuntimeError, match="two ranks"):
        merge_shards([[(0, "a")], [(0, "a")]])
