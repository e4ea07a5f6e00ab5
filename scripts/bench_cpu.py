#!/usr/bin/env python
"""CPU target run of `vtw bench` on a LLaVA-1.5-shaped random model, judged by paired intervals.

The model has LLaVA-1.5-7B's prompt shape (336 px image -> 576 vision tokens, the real chat
template, ~640-token prompts) with a smaller decoder (default hidden 512, 16 layers), built
with random weights. It runs baseline, FastV and VTW through `vtwcli.bench.bench` (the same
code as `vtw bench`: methods interleaved per sample, the first method rotating) and checks:

  1. the 95% bootstrap interval of VTW's paired per-sample prefill ratio (VTW/baseline) lies
     within 0.05 of its formula FLOPs ratio (both ends);
  2. VTW against FastV at equal or lower formula FLOPs: the paired VTW/FastV ratios of prefill
     and end to end, with their intervals (reported; "faster" only when the interval is below 1);
  3. the KV cache held per sample equals the analytic value for every sample and method.

Every run is kept: with --runs-dir the full result (every sample's timings) is written there
under a new name, never over an earlier run.

Usage (a few minutes on 2 cores):

  python scripts/bench_cpu.py --threads 2 --samples 30 --runs-dir docs/results/cpu
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
from pathlib import Path

TARGET_GAP = 0.05


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--k", type=int, default=None, help="VTW's K (default: half the layers, as the paper's 16 of 32)")
    ap.add_argument("--fastv-k", type=int, default=2)
    ap.add_argument("--fastv-ratio", type=float, default=0.5)
    ap.add_argument("--samples", type=int, default=30)
    ap.add_argument("--max-new-tokens", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--attn", default="sdpa")
    ap.add_argument("--json", default=None, help="also write the full bench result to this file")
    ap.add_argument("--runs-dir", default=None, help="keep this run's result and summary in this directory")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from vtwcli.bench import bench
    from vtwcli.bench.shaped import llava_shaped
    from vtwcli.engine.select import fastv_keep_count
    from vtwcli.fileio import write_atomic

    k = args.k or args.layers // 2
    loaded = llava_shaped(hidden_size=args.hidden, num_layers=args.layers, heads=args.heads, attn=args.attn)
    result = bench(
        model=loaded, random_init=True, methods=("baseline", "fastv", "vtw"), k=k, fastv_k=args.fastv_k,
        fastv_ratio=args.fastv_ratio, limit=args.samples, max_new_tokens=args.max_new_tokens,
        warmup=args.warmup, log_samples=True, seed=args.seed,
    )  # fmt: skip
    print(result.to_markdown())

    base, fastv, vtw = result.row("baseline"), result.row("fastv"), result.row("vtw")
    paired = result.paired
    checks: list[dict] = []

    # 1. VTW's prefill interval vs the formula
    pre = paired["vtw/baseline"]["prefill"]
    lo, hi = pre["ci95"]
    flops = vtw.tflops_ratio
    met = abs(lo - flops) <= TARGET_GAP and abs(hi - flops) <= TARGET_GAP
    checks.append({"name": "vtw prefill interval within 0.05 of the FLOPs ratio", "met": met,
                   "flops_ratio": flops, "median": pre["median"], "ci95": [lo, hi]})  # fmt: skip
    print(f"[{'MET' if met else 'NOT MET'}] VTW/baseline prefill: median {pre['median']:.3f}, 95% interval "
          f"[{lo:.3f}, {hi:.3f}] (n={pre['n']}) vs formula FLOPs ratio {flops:.3f}; target: both ends within "
          f"{TARGET_GAP} (gaps {lo - flops:+.3f}, {hi - flops:+.3f})")

    # 2. VTW vs FastV, reported with the intervals
    cheaper = vtw.tflops <= fastv.tflops
    vf = paired["vtw/fastv"]
    for measure in ("prefill", "e2e"):
        e = vf[measure]
        checks.append({"name": f"vtw/fastv {measure}", "median": e["median"], "ci95": e["ci95"],
                       "verdict": e["verdict"], "vtw_flops_le_fastv": cheaper})  # fmt: skip
        print(f"[{e['verdict'].upper()}] VTW (K={vtw.k}, {vtw.tflops_ratio:.3f}x FLOPs) / FastV (K={fastv.k}, "
              f"R={fastv.ratio:g}, {fastv.tflops_ratio:.3f}x FLOPs) {measure}: median {e['median']:.3f}, 95% "
              f"interval [{e['ci95'][0]:.3f}, {e['ci95'][1]:.3f}]")

    # 3. KV cache vs the analytic value, per sample, computed here from the config alone:
    #    2 (K and V) x kv_heads x head_dim x 4 bytes (fp32) per token per layer.
    text = loaded.model.config.text_config
    per_token_layer = 2 * text.num_key_value_heads * (text.hidden_size // text.num_attention_heads)
    per_token_layer *= loaded.model.dtype.itemsize
    n_layers = text.num_hidden_layers
    worst = 0.0
    for sample in result.samples:
        s, n_vis = sample["prompt_tokens"], sample["vision_tokens"]
        for name, row in (("baseline", base), ("fastv", fastv), ("vtw", vtw)):
            m = sample["methods"][name]
            held = s + m["new_tokens"] - 1  # the last generated token is never fed back
            if name == "baseline":
                short = held
            elif name == "vtw":
                short = held - n_vis
            else:
                short = held - (n_vis - fastv_keep_count(n_vis, row.ratio))
            layers_full = row.k or n_layers
            expected = (layers_full * held + (n_layers - layers_full) * short) * per_token_layer
            worst = max(worst, abs(m["kv_bytes"] - expected) / expected)
    met = worst == 0.0
    checks.append({"name": "kv cache equals the analytic value", "met": met, "largest_relative_error": worst})
    b_kv, v_kv, f_kv = base.kv_bytes_per_sample, vtw.kv_bytes_per_sample, fastv.kv_bytes_per_sample
    print(f"[{'MET' if met else 'NOT MET'}] KV cache per sample equals the analytic value for every sample and "
          f"method (largest relative error {worst:.2e}): baseline {b_kv / 2**20:.2f} MiB, FastV "
          f"{f_kv / 2**20:.2f} MiB ({f_kv / b_kv:.3f}x), VTW {v_kv / 2**20:.2f} MiB ({v_kv / b_kv:.3f}x)")
    env = result.environment
    print(f"machine: {env['device_name']}, torch threads {env['torch_threads']}, torch "
          f"{env['versions']['torch']}, transformers {env['versions']['transformers']}")

    text_out = json.dumps(result.to_dict(), indent=2, default=str) + "\n"
    if args.json:
        write_atomic(args.json, text_out)
    if args.runs_dir:
        runs = Path(args.runs_dir)
        runs.mkdir(parents=True, exist_ok=True)
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        stem = f"bench_cpu-{stamp}-h{args.hidden}-L{args.layers}-n{args.samples}-seed{args.seed}"
        write_atomic(runs / f"{stem}.json", text_out)
        summary = {"run": stem, "args": vars(args), "checks": checks, "markdown": result.to_markdown()}
        write_atomic(runs / f"{stem}.summary.json", json.dumps(summary, indent=2, default=str) + "\n")
        print(f"kept this run as {runs / stem}.json")
    return 0 if all(c.get("met", True) for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
