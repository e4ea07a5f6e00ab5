#!/usr/bin/env python
"""Everything vtw measures on one GPU, in one run, written to one folder (JSON and markdown).

`scripts/gpu_all.sh OUTDIR` installs what is missing on a bare machine and runs this. Steps,
in this order, each with its own time limit inside one overall budget (default 420 s; a step
that would not fit is skipped and the summary says so). Expected times on one H100/H200-class
GPU are estimates from the step sizes (no GPU run of this script has been timed yet):

  1. the engine tests in bfloat16 on the GPU (eager, sdpa and flash-attention-2 when
     installed): at most 100 s (the limit);
  2. `vtw bench --random-init` (the library call behind it) on LLaVA-1.5-7B and LLaVA-NeXT-7B
     shapes, bf16, sdpa: baseline, FastV (K=2, R=0.5), VTW (K=16), methods interleaved,
     paired per-sample ratios with 95% intervals, peak and per-sample memory from torch and
     NVML (measured in separate untimed runs): about 75 s per model; on
     LLaVA-NeXT-7B also FastV's masking implementation (`fastv-mask`, every token cached:
     the paper's FastV memory row), about 20 s more: 170 s in all;
  3. throughput, `vtw bench` on LLaVA-1.5-7B, bf16, sdpa (the same settings as
     scripts/gpu_throughput.sh, sized down): batch 8 over 24 samples (3 batches) with tokens/s
     paired per batch, then baseline's and VTW's largest batch within a 24 GiB memory budget
     (searched among 64 prompts, measured and predicted) and its tokens/s over 2 rounds; 16 new
     tokens. Each run is a `vtw bench` process (its own model load, about 15 s) killed at its
     limit (45 s and 75 s): 120 s at most;
  4. the calibration sweep's cost on the LLaVA-1.5-7B shape: the one-pass sweep and the
     paper's loop, in full forwards per sample, by the formula and measured (synchronized):
     about 30-40 s;
  5. with flash-attn installed and time left: step 2 with flash_attention_2;
  6. summary.json and summary.md: every figure with the card's name, and each target
     (prefill interval within 0.05 of the FLOPs ratio; per-sample memory ratio within 0.02 of
     the KV-cache ratio; LLaVA-NeXT-7B per-sample memory no worse than the paper's 0.65x;
     VTW tokens/s at batch 8 at least 1.3x the baseline's with the interval above 1; VTW's
     max batch within the budget at least 1.6x the baseline's).

Steps 1-4 add up to about 430 s against the 420 s budget (100 + 170 + 120 + 40): the
throughput step takes only what leaves 40 s for step 4, so it gives up the difference; with the
install (about 2-3 minutes on a bare machine) the whole of scripts/gpu_all.sh stays within 10
minutes.

`--dry-run` runs the same steps and the same library entry points on the CPU with tiny
LLaVA-shaped models (the throughput runs on the bundled testbed), in seconds: it checks the
script, not the GPU.

    python scripts/gpu_all.py --out gpu_out            # on a GPU machine
    python scripts/gpu_all.py --out gpu_dry --dry-run  # anywhere
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("llava-1.5-7b", "llava-next-7b")
PAPER_MEMORY_MODEL = "llava-next-7b"  # the paper's memory table (Table 4)
PAPER_NEXT_MEMORY_RATIO = 0.65
PREFILL_GAP = 0.05
MEMORY_GAP = 0.02
TOKENS_PER_S_TARGET = 1.3  # VTW tokens/s at batch 8 over the baseline's (interval above 1)
MAX_BATCH_TARGET = 1.6  # VTW's max batch within the budget over the baseline's


class Budget:
    def __init__(self, seconds: float):
        self.start = time.monotonic()
        self.seconds = seconds

    @property
    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.start)

    @property
    def used(self) -> float:
        return time.monotonic() - self.start


def log(msg: str) -> None:
    print(msg, flush=True)


def write(path: Path, text: str) -> None:
    from vtwcli.fileio import write_atomic

    write_atomic(path, text)


# ------------------------------------------------------------------------------ environment
def environment(dry_run: bool) -> dict:
    import importlib.metadata as md
    import importlib.util

    import torch

    env = {
        "dry_run": dry_run,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "device_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU",
        "flash_attn": importlib.util.find_spec("flash_attn") is not None,
        "python": sys.version.split()[0],
    }
    for pkg in ("transformers", "vtwcli", "flash-attn", "nvidia-ml-py"):
        try:
            env[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            env[pkg] = None
    try:
        env["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        env["nvidia_smi"] = None
    return env


# ------------------------------------------------------------------------------ 1. engine tests
def engine_tests(out: Path, budget: Budget, dry_run: bool, limit_s: float) -> dict:
    device = "cpu" if dry_run else "cuda"
    dtype = "float32" if dry_run else "bfloat16"
    # the engine suite (eager, sdpa, flash_attention_2 on tiny models of every family) in bf16; the
    # per-family conformance suite is left out to fit the budget (scripts/gpu_check.sh runs it all)
    cmd = [sys.executable, "-m", "pytest", "-q", "-ra", "-p", "no:cacheprovider", "tests/engine",
           "--ignore=tests/engine/conformance", f"--junitxml={out / 'engine_tests.xml'}"]  # fmt: skip
    if dry_run:
        cmd += ["-k", "flash_attention_2"]  # on a CPU every flash case skips: the command is what is checked
    env = dict(os.environ, VTW_TEST_DEVICE=device, VTW_TEST_DTYPE=dtype, HF_HUB_OFFLINE="1")
    t0 = time.monotonic()
    timeout = max(10.0, min(limit_s, budget.left - 60))
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        rc, text = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as err:
        partial = err.stdout or ""
        rc, text = 124, partial.decode(errors="replace") if isinstance(partial, bytes) else partial
    write(out / "engine_tests.log", text)
    last = [line for line in text.strip().splitlines() if line.strip()][-1:] or [""]
    return {"device": device, "dtype": dtype, "returncode": rc, "seconds": time.monotonic() - t0,
            "summary": last[0], "timed_out": rc == 124}  # fmt: skip


# ------------------------------------------------------------------------------ 2. bench
def load(model: str, attn: str, dry_run: bool):
    if dry_run:
        from vtwcli.bench.shaped import llava_shaped

        return llava_shaped(hidden_size=64, num_layers=4, heads=2, vision_hidden=32, attn="sdpa")
    from vtwcli.models import load_model

    return load_model(model, random_init=True, dtype="bf16", device="cuda", attn=attn)


def free_device() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def bench_one(model: str, attn: str, args, out: Path) -> dict:
    from vtwcli.bench import bench

    loaded = load(model, attn, args.dry_run)
    n = int(loaded.num_layers)
    k = max(1, n // 2)  # the paper's K=16 of 32
    methods = ("baseline", "fastv", "vtw")
    if model == PAPER_MEMORY_MODEL and attn in ("sdpa", "eager"):
        methods += ("fastv-mask",)  # the paper's FastV memory (Table 4); flash-attention takes no 4D mask
    try:
        result = bench(
            loaded, random_init=True, methods=methods, k=k, fastv_k=min(2, n), fastv_ratio=0.5,
            limit=args.samples, max_new_tokens=args.new_tokens, warmup=1, seed=0, log_samples=True,
        )  # fmt: skip
    finally:
        del loaded
        free_device()
    tag = f"{model}_{attn}"
    write(out / f"bench_{tag}.json", result.to_json())
    write(out / f"bench_{tag}.md", f"## {model}, {attn}\n\n" + result.to_markdown())
    return summarize_bench(model, attn, result)


def summarize_bench(model: str, attn: str, result) -> dict:
    rows = {r.method: r for r in result.rows}
    vtw, fastv = rows.get("vtw"), rows.get("fastv")
    pre = result.paired.get("vtw/baseline", {}).get("prefill", {})
    ci = pre.get("ci95")
    flops = vtw.tflops_ratio if vtw else None
    entry = {
        "model": model, "attn": attn, "samples": result.task.get("samples"),
        "prompt_tokens": result.prompt.get("avg_prompt_tokens"), "vision_tokens": result.prompt.get("avg_vision_tokens"),
        "vtw_flops_ratio": flops, "vtw_prefill": pre, "paired": result.paired,
        "kv_ratio": vtw.kv_ratio if vtw else None,
        "per_sample_mem_ratio": vtw.per_sample_mem_ratio if vtw else None,
        "nvml_per_sample_ratio": vtw.nvml_per_sample_ratio if vtw else None,
        "peak_mem_bytes": {m: r.peak_mem_bytes for m, r in rows.items()},
        "per_sample_mem_bytes": {m: r.per_sample_mem_bytes for m, r in rows.items()},
        "fastv_flops_ratio": fastv.tflops_ratio if fastv else None,
        "fastv_per_sample_mem_ratio": fastv.per_sample_mem_ratio if fastv else None,
        "fastv_mask_per_sample_mem_ratio": rows["fastv-mask"].per_sample_mem_ratio if "fastv-mask" in rows else None,
        "errors": {m: r.error for m, r in rows.items() if r.error},
    }  # fmt: skip
    targets = {}
    if ci and flops is not None:
        targets["prefill_interval_within_0.05_of_flops"] = abs(ci[0] - flops) <= PREFILL_GAP and abs(ci[1] - flops) <= PREFILL_GAP
    mem, kv = entry["per_sample_mem_ratio"], entry["kv_ratio"]
    if mem is not None and kv is not None:
        targets["memory_ratio_within_0.02_of_kv_ratio"] = abs(mem - kv) <= MEMORY_GAP
    if mem is not None and model == "llava-next-7b":
        targets["next_memory_no_worse_than_paper_0.65"] = mem <= PAPER_NEXT_MEMORY_RATIO
    entry["targets"] = targets
    return entry


# ------------------------------------------------------------------------------ 3. throughput
def throughput_runs(dry_run: bool, new_tokens: int) -> tuple[list[str], list[tuple[str, list[str], float]]]:
    """The `vtw bench` arguments every throughput run shares, and (tag, own arguments, share of
    the step's time) per run. Dry: the bundled testbed on the CPU, tiny sizes."""
    if dry_run:
        common = ["--model", "testbed", "--device", "cpu", "--k", "4", "--fastv-k", "2", "--fastv-ratio", "0.5",
                  "--max-new-tokens", "2", "--min-new-tokens", "2", "--warmup", "1"]
        runs = [("batch", ["--methods", "baseline,fastv,vtw", "--batch-size", "2", "--limit", "4"], 0.4),
                ("budget", ["--methods", "baseline,vtw", "--memory-budget", "4GiB", "--limit", "4", "--repeats", "2"], 0.6)]
        return common, runs  # fmt: skip
    n = str(new_tokens)
    common = ["--model", "llava-1.5-7b", "--random-init", "--dtype", "bf16", "--device", "cuda", "--attn", "sdpa",
              "--k", "16", "--fastv-k", "2", "--fastv-ratio", "0.5",
              "--max-new-tokens", n, "--min-new-tokens", n, "--warmup", "1"]
    # batch 8: 3 batches (24 samples) so the paired tokens/s has an interval. The budget run searches
    # among 64 prompts: at 24 GiB and 16 new tokens the analytic model predicts a max batch of 29
    # (baseline) and 50 (VTW) (`python scripts/bench_throughput.py --parts predict --predict-budgets
    # 24GiB --predict-new-tokens 16`); FastV is left out of it to keep the search within its limit.
    runs = [("batch", ["--methods", "baseline,fastv,vtw", "--batch-size", "8", "--limit", "24"], 45 / 120),
            ("budget", ["--methods", "baseline,vtw", "--memory-budget", "24GiB", "--limit", "64", "--repeats", "2"],
             75 / 120)]
    return common, runs  # fmt: skip


def throughput(args, out: Path, budget: Budget, limit_s: float) -> dict:
    """Step 3: each run is a `vtw bench` process (JSON and markdown into ``out``), killed at its
    share of ``limit_s`` so that the step cannot overrun the budget."""
    common, runs = throughput_runs(args.dry_run, args.new_tokens)
    got: dict = {}
    for tag, extra, share in runs:
        json_path, md_path = out / f"throughput_{tag}.json", out / f"throughput_{tag}.md"
        cmd = [sys.executable, "-m", "vtwcli", "bench", *common, *extra, "--json", str(json_path),
               "--markdown", str(md_path)]  # fmt: skip
        timeout = max(10.0, min(limit_s * share, budget.left - 40))
        t0 = time.monotonic()
        env = dict(os.environ, HF_HUB_OFFLINE="1", COLUMNS="200")
        entry: dict = {"command": "vtw " + " ".join(cmd[3:]).replace(str(out) + os.sep, ""), "limit_s": round(timeout)}
        try:
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
            rc, text = proc.returncode, proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as err:
            partial = err.stdout or ""
            rc, text = 124, partial.decode(errors="replace") if isinstance(partial, bytes) else partial
        write(out / f"throughput_{tag}.log", text)
        entry.update(returncode=rc, seconds=time.monotonic() - t0, timed_out=rc == 124)
        if rc != 0 or not json_path.is_file():
            lines = [line for line in text.strip().splitlines() if line.strip()]
            entry["error"] = ("timed out" if rc == 124 else f"exit {rc}") + (f": {lines[-1][:200]}" if lines else "")
        else:
            entry.update(summarize_throughput(json.loads(json_path.read_text())))
        got[tag] = entry
    return got


def summarize_throughput(data: dict) -> dict:
    rows = {r["method"]: r for r in data["rows"]}
    vtw, base = rows.get("vtw") or {}, rows.get("baseline") or {}
    settings = data["settings"]
    entry = {
        "model": data.get("model", {}).get("alias") or data.get("model", {}).get("id"),
        "mode": settings.get("mode"),
        "tokens_per_s": {m: r.get("tokens_per_s") for m, r in rows.items()},
        "vtw_tokens_per_s_ratio": vtw.get("tokens_per_s_ratio"),
        "vtw_tokens_per_s_ratio_ci95": vtw.get("tokens_per_s_ratio_ci95"),
        "errors": {m: r["error"] for m, r in rows.items() if r.get("error")},
    }
    targets = {}
    if settings.get("mode") == "memory-budget":
        entry["memory_budget"] = settings.get("memory_budget_text")
        entry["max_batch"] = {m: r.get("max_batch") for m, r in rows.items()}
        entry["max_batch_predicted"] = {m: r.get("max_batch_predicted") for m, r in rows.items()}
        entry["max_batch_capped"] = {m: r.get("max_batch_capped") for m, r in rows.items()}
        entry["vtw_max_batch_ratio"] = vtw.get("max_batch_ratio")
        entry["vtw_max_batch_predicted_ratio"] = vtw.get("max_batch_predicted_ratio")
        if entry["vtw_max_batch_ratio"] is not None and not (vtw.get("max_batch_capped") or base.get("max_batch_capped")):
            targets[f"max_batch_at_least_{MAX_BATCH_TARGET}x"] = entry["vtw_max_batch_ratio"] >= MAX_BATCH_TARGET
    else:
        entry["batch_size"] = settings.get("batch_size")
        ci = entry["vtw_tokens_per_s_ratio_ci95"]
        if entry["vtw_tokens_per_s_ratio"] is not None and ci:
            targets[f"tokens_per_s_at_least_{TOKENS_PER_S_TARGET}x_interval_above_1"] = (
                entry["vtw_tokens_per_s_ratio"] >= TOKENS_PER_S_TARGET and ci[0] > 1
            )
    entry["targets"] = targets
    return entry


# ------------------------------------------------------------------------------ 4. sweep cost
def sweep_cost(args, out: Path) -> dict:
    from vtwcli.calibrate import calibrate

    loaded = load(MODELS[0], "sdpa", args.dry_run)
    try:
        got = {}
        for method in ("fast", "slow"):
            res = calibrate(loaded, "shapes", samples=args.sweep_samples, write=False, method=method, seed=0)
            got[method] = {key: res.cost[key] for key in res.cost}
            got[method]["k_values"] = [res.k_values[0], res.k_values[-1]]
            got[method]["mean_prompt_length"] = res.mean_prompt_length
    finally:
        del loaded
        free_device()
    write(out / "sweep_cost.json", json.dumps(got, indent=2, default=str) + "\n")
    return got


# ------------------------------------------------------------------------------ 6. summary
def markdown(summary: dict) -> str:
    env = summary["environment"]
    lines = [f"# vtw on {env['device_name']}" + (" (DRY RUN on CPU: not a GPU measurement)" if env["dry_run"] else ""),
             "", f"torch {env['torch']} (CUDA {env['cuda']}), transformers {env.get('transformers')}, "
             f"flash-attn {env.get('flash-attn') or 'not installed'}, nvidia-ml-py {env.get('nvidia-ml-py') or 'not installed'}; "
             f"{summary['seconds']:.0f} s in all.", ""]  # fmt: skip
    eng = summary.get("engine_tests")
    if eng:
        lines += [f"Engine tests ({eng['device']}, {eng['dtype']}): exit {eng['returncode']} in {eng['seconds']:.0f} s: "
                  f"`{eng['summary']}`", ""]  # fmt: skip
    lines += ["| model | attn | prompt / vision | VTW FLOPs x | VTW prefill x (95% CI) | KV x | per-sample mem x | NVML x | targets |",
              "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for b in summary.get("bench", []):
        if "error" in b:
            lines.append(f"| {b['model']} | {b['attn']} | failed: {b['error'][:120]} | | | | | | |")
            continue
        pre = b["vtw_prefill"] or {}
        ci = pre.get("ci95") or [float("nan")] * 2

        def f(x):
            return "n/a" if x is None else f"{x:.3f}"

        marks = ", ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in b["targets"].items()) or "-"
        lines.append(
            f"| {b['model']} | {b['attn']} | {b['prompt_tokens']:.0f} / {b['vision_tokens']:.0f} | {f(b['vtw_flops_ratio'])} "
            f"| {f(pre.get('median'))} [{ci[0]:.3f}, {ci[1]:.3f}] | {f(b['kv_ratio'])} | {f(b['per_sample_mem_ratio'])} "
            f"| {f(b['nvml_per_sample_ratio'])} | {marks} |"
        )
    for b in summary.get("bench", []):
        if "error" not in b and "fastv-mask/baseline" in b.get("paired", {}):
            r = {k: "n/a" if b.get(k) is None else f"{b[k]:.3f}"
                 for k in ("fastv_per_sample_mem_ratio", "fastv_mask_per_sample_mem_ratio", "per_sample_mem_ratio")}
            lines.append(f"- {b['model']} {b['attn']}: per-sample memory x baseline: FastV in place "
                         f"{r['fastv_per_sample_mem_ratio']}, FastV masking {r['fastv_mask_per_sample_mem_ratio']}, "
                         f"VTW {r['per_sample_mem_ratio']} (paper, LLaVA-NeXT-7B: FastV 1.00, VTW 0.65)")  # fmt: skip
    for s in summary.get("skipped", []):
        lines.append(f"- skipped: {s}")
    cost = summary.get("sweep_cost")
    if cost and "error" not in cost:
        lines += ["", "Calibration sweep cost (full forwards per sample; formula / measured with the device synchronized):"]
        for method, c in cost.items():
            lines.append(f"- {method}: {c.get(f'{method}_formula_forwards_per_sample', float('nan')):.2f} / "
                         f"{c.get('measured_forwards_per_sample', float('nan')):.2f} (K {c['k_values'][0]}..{c['k_values'][1]}, "
                         f"prompt {c['mean_prompt_length']:.0f} tokens)")  # fmt: skip
    elif cost:
        lines += ["", f"Calibration sweep cost: failed: {cost['error']}"]
    tp = summary.get("throughput")
    if tp:
        model = next((t["model"] for t in tp.values() if t.get("model")), "llava-1.5-7b")
        lines += ["", f"Throughput, `vtw bench` on {model} (tables: throughput_batch.md, throughput_budget.md):"]
        for tag, t in tp.items():
            if "error" in t:
                lines.append(f"- {tag}: failed ({t['error']}); see throughput_{tag}.log")
                continue
            ratio, ci = t.get("vtw_tokens_per_s_ratio"), t.get("vtw_tokens_per_s_ratio_ci95")
            tps = "n/a" if ratio is None else f"{ratio:.2f}x" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
            marks = ", ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in t["targets"].items()) or "no target judged"
            if t.get("mode") == "memory-budget":
                b = {m: f"{'>=' if t['max_batch_capped'].get(m) else ''}{n} (predicted {t['max_batch_predicted'].get(m)})"
                     for m, n in t["max_batch"].items()}  # fmt: skip
                r, pr = t.get("vtw_max_batch_ratio"), t.get("vtw_max_batch_predicted_ratio")
                lines.append(
                    f"- budget {t['memory_budget']}: max batch " + ", ".join(f"{m} {v}" for m, v in b.items()) + ": "
                    f"VTW {'n/a' if r is None else f'{r:.2f}x'} measured, {'n/a' if pr is None else f'{pr:.2f}x'} predicted; "
                    f"tokens/s at max batch {tps} ({t['seconds']:.0f} s; {marks})"
                )
            else:
                base = t["tokens_per_s"].get("baseline")
                lines.append(
                    f"- batch {t['batch_size']}: VTW tokens/s {tps} of the baseline's "
                    f"({'n/a' if base is None else f'{base:.1f}'} tokens/s; {t['seconds']:.0f} s; {marks})"
                )
    lines += ["", "Per-config tables: bench_<model>_<attn>.md; every sample's timings: bench_<model>_<attn>.json."]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder for the JSON and markdown results")
    ap.add_argument("--dry-run", action="store_true", help="tiny models on the CPU: check the script, not the GPU")
    ap.add_argument("--samples", type=int, default=None, help="samples per bench run (default 8; 2 dry)")
    ap.add_argument("--new-tokens", type=int, default=None, help="tokens per reply (default 16; 2 dry)")
    ap.add_argument("--sweep-samples", type=int, default=None, help="calibration samples (default 4; 1 dry)")
    ap.add_argument("--budget-s", type=float, default=float(os.environ.get("VTW_GPU_BUDGET_S", 420)))
    ap.add_argument("--engine-tests-s", type=float, default=100.0, help="time limit of the engine tests")
    ap.add_argument("--skip-engine-tests", action="store_true")
    ap.add_argument("--throughput-s", type=float, default=120.0, help="time limit of the two throughput runs together")
    ap.add_argument("--skip-throughput", action="store_true")
    args = ap.parse_args()
    args.samples = args.samples or (2 if args.dry_run else 8)
    args.new_tokens = args.new_tokens or (2 if args.dry_run else 16)
    args.sweep_samples = args.sweep_samples or (1 if args.dry_run else 4)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(ROOT))
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print("error: no CUDA device visible to torch; run on a GPU machine, or pass --dry-run", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    budget = Budget(args.budget_s)
    env = environment(args.dry_run)
    log(f"device: {env['device_name']}; torch {env['torch']}; flash-attn {'yes' if env['flash_attn'] else 'no'}")
    summary: dict = {"environment": env, "bench": [], "skipped": []}
    status = 0

    if not args.skip_engine_tests:
        log("== 1. engine tests")
        summary["engine_tests"] = engine_tests(out, budget, args.dry_run, args.engine_tests_s)
        log(f"   {summary['engine_tests']['summary']} (exit {summary['engine_tests']['returncode']})")
        status |= summary["engine_tests"]["returncode"] != 0

    flash = env["flash_attn"] and not args.dry_run
    # a 7B config takes about a minute (random init on the GPU, timed and memory runs); order by value:
    # sdpa bench, throughput, sweep cost, then flash_attention_2 with what is left
    per_config_s = 20 if args.dry_run else 75

    def bench_configs(configs) -> int:
        failed = 0
        for model, attn in configs:
            if budget.left < per_config_s + 45:
                summary["skipped"].append(f"bench {model} {attn}: {budget.left:.0f} s left of the budget")
                continue
            log(f"== 2. bench {model} {attn}")
            try:
                entry = bench_one(model, attn, args, out)
                log(f"   VTW prefill {entry['vtw_prefill'].get('median')} {entry['vtw_prefill'].get('ci95')} vs FLOPs "
                    f"{entry['vtw_flops_ratio']}; per-sample memory {entry['per_sample_mem_ratio']}")  # fmt: skip
            except Exception as err:  # noqa: BLE001 - one failed config must not lose the others' figures
                entry = {"model": model, "attn": attn, "error": f"{type(err).__name__}: {err}"}
                write(out / f"bench_{model}_{attn}.error.txt", traceback.format_exc())
                free_device()
                failed = 1
            summary["bench"].append(entry)
            write(out / "summary.json", json.dumps({**summary, "seconds": budget.used}, indent=2, default=str) + "\n")
        return failed

    status |= bench_configs([(m, "sdpa") for m in MODELS])

    if args.skip_throughput:
        summary["skipped"].append("throughput: --skip-throughput")
    elif budget.left >= min(args.throughput_s, 30) + 40:
        log("== 3. throughput (batch 8, memory budget)")
        summary["throughput"] = throughput(args, out, budget, min(args.throughput_s, budget.left - 40))
        for tag, t in summary["throughput"].items():
            log(f"   {tag}: " + (t["error"] if "error" in t else f"VTW tokens/s {t.get('vtw_tokens_per_s_ratio')}x"
                                 + (f", max batch {t.get('vtw_max_batch_ratio')}x" if "max_batch" in t else "")))
        status |= any("error" in t for t in summary["throughput"].values())
        write(out / "summary.json", json.dumps({**summary, "seconds": budget.used}, indent=2, default=str) + "\n")
    else:
        summary["skipped"].append(f"throughput: {budget.left:.0f} s left of the budget")

    if budget.left > 40:
        log("== 4. calibration sweep cost")
        try:
            summary["sweep_cost"] = sweep_cost(args, out)
        except Exception as err:  # noqa: BLE001
            summary["sweep_cost"] = {"error": f"{type(err).__name__}: {err}"}
            write(out / "sweep_cost.error.txt", traceback.format_exc())
            status = 1
    else:
        summary["skipped"].append(f"calibration sweep cost: {budget.left:.0f} s left of the budget")

    if flash:
        status |= bench_configs([(m, "flash_attention_2") for m in MODELS])

    summary["seconds"] = budget.used
    write(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    write(out / "summary.md", markdown(summary))
    print(markdown(summary))
    return int(bool(status))


if __name__ == "__main__":
    sys.exit(main())
