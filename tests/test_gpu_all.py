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


def _blocking(tmp_path, module):
    """A folder that, first on PYTHONPATH, makes ``import module`` fail as if it were not installed."""
    folder = tmp_path / "blocked"
    folder.mkdir(exist_ok=True)
    (folder / f"{module}.py").write_text('raise ImportError("not installed here")\n')
    return folder


def test_gpu_env_checks_what_vtw_needs_against_pyproject(tmp_path):
    import os
    import sys

    script = ROOT / "scripts" / "gpu_env.py"
    ok = subprocess.run([sys.executable, str(script), "--allow-cpu"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and ok.stdout.startswith("ready: torch ") and "transformers 5." in ok.stdout, ok.stdout
    no_gpu = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    if no_gpu.returncode == 1:  # a machine without CUDA, as CI is
        assert no_gpu.stdout.startswith("not ready: missing a CUDA device")
    env = dict(os.environ, PYTHONPATH=str(_blocking(tmp_path, "tabulate")))
    blocked = subprocess.run([sys.executable, str(script), "--allow-cpu"], capture_output=True, text=True, timeout=120,
                             env=env)  # fmt: skip
    assert blocked.returncode == 1 and blocked.stdout.startswith("not ready: missing tabulate"), blocked.stdout


def test_gpu_env_reads_the_declared_ranges():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_env", ROOT / "scripts" / "gpu_env.py")
    gpu_env = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_env)
    tf = gpu_env.declared("transformers")
    assert tf and tf.startswith(">=5.") and gpu_env.in_range("5.17.0", tf)  # the GPU machine's preinstalled one
    assert not gpu_env.in_range("4.57.0", tf)
    assert gpu_env.in_range("2.13.0+cpu", gpu_env.declared("torch")) and not gpu_env.in_range("2.11.0+cu130", gpu_env.declared("torch"))


def test_without_a_usable_python_and_without_an_index_it_stops_at_once(tmp_path):
    """A machine whose python3 cannot run vtw (here: no CUDA) and that reaches no package index
    stops in one line instead of trying to install for minutes."""
    import os
    import sys

    if subprocess.run([sys.executable, "-c", "import torch, sys; sys.exit(torch.cuda.is_available())"]).returncode:
        import pytest

        pytest.skip("this machine has a CUDA device: the script would run for real")
    env = dict(os.environ, PYTHON=sys.executable, PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL="http://127.0.0.1:9/simple",
               PIP_FIND_LINKS="", VTW_GPU_VENV=str(tmp_path / "venv"))  # fmt: skip
    env.pop("PIP_EXTRA_INDEX_URL", None)
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_all.sh"), str(out)], capture_output=True, text=True,
                          timeout=120, env=env)  # fmt: skip
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text
    assert "cannot run vtw as it is: missing a CUDA device" in text
    assert "error: no package index is reachable" in text
    assert not (tmp_path / "venv").exists()  # nothing was created or installed
