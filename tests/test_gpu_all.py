"""scripts/gpu_all.sh runs its whole path on the CPU with --dry-run (the GPU run cannot happen in CI)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_dry_run_writes_every_result_file(tmp_path):
    out = tmp_path / "gpu out"  # a space in the path must not break the shell script
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_all.sh"), str(out), "--dry-run", "--skip-engine-tests"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["environment"]["dry_run"] is True
    assert [(b["model"], b["attn"]) for b in summary["bench"]] == [("llava-1.5-7b", "sdpa"), ("llava-next-7b", "sdpa")]
    for b in summary["bench"]:
        assert "error" not in b, b
        assert b["vision_tokens"] == 576 and 0 < b["vtw_flops_ratio"] < 1
        pairs = {"fastv/baseline", "vtw/baseline", "vtw/fastv"}
        if b["model"] == "llava-next-7b":  # FastV's masking implementation too: the paper's FastV memory row
            pairs |= {"fastv-mask/baseline", "vtw/fastv-mask"}
        assert b["vtw_prefill"]["n"] == 2 and set(b["paired"]) == pairs
        assert (out / f"bench_{b['model']}_sdpa.json").is_file() and (out / f"bench_{b['model']}_sdpa.md").is_file()
    cost = summary["sweep_cost"]
    assert cost["fast"]["measured_forwards_per_sample"] > 0 and cost["slow"]["slow_formula_forwards_per_sample"] > 1
    # the throughput step: batch (tokens/s paired per batch) and memory budget (max batch), each a
    # `vtw bench` process writing JSON and markdown into the same folder
    tp = summary["throughput"]
    assert set(tp) == {"batch", "budget"}
    for tag, t in tp.items():
        assert "error" not in t and t["returncode"] == 0, t
        assert (out / f"throughput_{tag}.json").is_file() and (out / f"throughput_{tag}.md").is_file()
        assert t["model"] == "testbed" and {"baseline", "vtw"} <= set(t["tokens_per_s"])
        assert all(v > 0 for v in t["tokens_per_s"].values())
        assert len(t["vtw_tokens_per_s_ratio_ci95"]) == 2  # paired over 2 batches / 2 rounds
    assert tp["batch"]["mode"] == "batch" and tp["batch"]["batch_size"] == 2 and "fastv" in tp["batch"]["tokens_per_s"]
    assert tp["budget"]["mode"] == "memory-budget" and all(n >= 1 for n in tp["budget"]["max_batch"].values())
    batch = json.loads((out / "throughput_batch.json").read_text())
    assert batch["settings"]["batch_size"] == 2 and batch["task"]["samples"] == 4
    text = (out / "summary.md").read_text()
    assert "DRY RUN on CPU" in text and "| llava-next-7b | sdpa |" in text
    assert "- llava-next-7b sdpa: per-sample memory x baseline: FastV in place n/a, FastV masking n/a" in text
    assert "- batch 2: VTW tokens/s" in text and "- budget 4.00 GiB: max batch baseline >=4" in text


def test_usage_errors_are_one_line():
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_all.sh")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "usage: bash scripts/gpu_all.sh OUTDIR" in proc.stderr
