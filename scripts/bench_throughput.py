#!/usr/bin/env python
"""Throughput targets of `vtw bench --batch-size` and `--memory-budget` on LLaVA-1.5's geometry.

Three parts, each through the code behind `vtw bench` (`vtwcli.bench.bench`):

  1. batch: a LLaVA-1.5-shaped random model (576 vision tokens, ~640-token prompts, the real
     chat template; a smaller decoder, see vtwcli.bench.shaped) generates --batch-size samples
     per call, baseline / FastV / VTW interleaved per batch. Target: VTW's generated tokens/s
     at least 1.3x the baseline's, the paired per-batch interval excluding 1.
  2. budget (CPU): the same model under a memory budget of the process's resident memory plus
     --budget-room: each method's largest batch, measured and predicted side by side.
  3. prediction: the analytic model on the real LLaVA-1.5-7B geometry (fp16 weights built on
     the meta device, the paper's 641-token MME prompt with 576 vision tokens, K=16) at
     --predict-budgets. Target: VTW's max batch at least 1.6x the baseline's.

Usage (about 10-20 minutes on 2 quiet cores):

  python scripts/bench_throughput.py --threads 2 --json bench_throughput.json
"""

from __future__ import annotations

import argparse
import json
import sys


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--k", type=int, default=None, help="VTW's K (default: half the layers, as the paper's 16 of 32)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--samples", type=int, default=40, help="samples in the batch part (batches = samples / batch size)")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--budget-room", default="384MiB", help="budget part: this much above the loaded process's memory")
    ap.add_argument("--budget-samples", type=int, default=24, help="budget part: prompts (the largest batch searched)")
    ap.add_argument("--budget-new-tokens", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--methods", default="baseline,fastv,vtw", help="rows of the batch and budget parts")
    ap.add_argument("--predict-budgets", default="24GiB,40GiB,80GiB")
    ap.add_argument("--predict-new-tokens", default="32,128")
    ap.add_argument("--parts", default="batch,budget,predict")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None, help="write every result here")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from vtwcli.bench import bench
    from vtwcli.bench.budget import (
        Geometry,
        format_bytes,
        parse_memory_budget,
        predict,
        weights_bytes_from_config,
    )
    from vtwcli.bench.shaped import llava_shaped
    from vtwcli.bench.throughput import rss_bytes
    from vtwcli.fileio import write_atomic

    parts = {p.strip() for p in args.parts.split(",")}
    k = args.k or args.layers // 2
    out: dict = {"args": vars(args)}
    ok = True
    loaded = None
    if parts & {"batch", "budget"}:
        loaded = llava_shaped(hidden_size=args.hidden, num_layers=args.layers, heads=args.heads)

    if "batch" in parts:
        res = bench(model=loaded, random_init=True, methods=args.methods, k=k, limit=args.samples,
                    max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, warmup=1)  # fmt: skip
        print(res.to_markdown())
        vtw = res.row("vtw")
        ci = vtw.tokens_per_s_ratio_ci95
        good = vtw.tokens_per_s_ratio is not None and vtw.tokens_per_s_ratio >= 1.3 and ci is not None and ci[0] > 1
        ok &= good
        ci_text = "no interval" if not ci else f"[{ci[0]:.2f}, {ci[1]:.2f}]"
        print(f"[{'PASS' if good else 'FAIL'}] batch {args.batch_size}: VTW tokens/s {vtw.tokens_per_s:.1f} vs baseline "
              f"{res.row('baseline').tokens_per_s:.1f}: paired per-batch ratio {vtw.tokens_per_s_ratio:.2f} {ci_text} "
              f"over {res.paired.get('vtw/baseline', {}).get('e2e', {}).get('n')} batches (target >= 1.3x, interval "
              "above 1)")
        out["batch"] = res.to_dict()

    if "budget" in parts:
        budget = rss_bytes() + parse_memory_budget(args.budget_room)
        res = bench(model=loaded, random_init=True, methods=args.methods, k=k, limit=args.budget_samples, max_new_tokens=args.budget_new_tokens, memory_budget=budget,
                    repeats=args.repeats, warmup=1)  # fmt: skip
        print(res.to_markdown())
        for row in res.rows:
            pred = (row.search or {}).get("prediction") or {}
            print(f"  {row.method}: max batch {row.max_batch}{' (capped)' if row.max_batch_capped else ''}, predicted "
                  f"{row.max_batch_predicted} (per sample {format_bytes(pred.get('per_sample_bytes'))}, fixed "
                  f"{format_bytes(pred.get('fixed_bytes'))}, budget {format_bytes(budget)})")
        out["budget"] = res.to_dict()

    if "predict" in parts:
        from vtwcli.models import shipped_config_dict
        from vtwcli.models.loading import config_from_dict

        cfg = config_from_dict(shipped_config_dict("llava-1.5-7b"))
        weights = weights_bytes_from_config(cfg, torch.float16)
        geo = Geometry.from_config(cfg, element_size=2, attn="sdpa")
        n = geo.num_layers
        rows = []
        for new in [int(x) for x in args.predict_new_tokens.split(",")]:
            for text in args.predict_budgets.split(","):
                b = parse_memory_budget(text)
                preds = {m: predict(geo, m, prompt_tokens=641, vision_tokens=576, new_tokens=new, k=kk, fixed_bytes=weights,
                                    budget_bytes=b) for m, kk in (("baseline", None), ("fastv", 2), ("vtw", n // 2))}  # fmt: skip
                base = preds["baseline"].max_batch
                row = {"budget": text, "new_tokens": new, "weights_bytes": weights}
                for m, p in preds.items():
                    row[m] = {"max_batch": p.max_batch, "ratio": p.max_batch / base if base else None,
                              "per_sample_bytes": p.per_sample_bytes, "kv_end_bytes": p.kv_end_bytes}  # fmt: skip
                rows.append(row)
        print(f"LLaVA-1.5-7B fp16 (weights {format_bytes(weights)}), prompt 641 tokens of which 576 vision, "
              f"VTW K={n // 2}, FastV K=2 R=0.5; predicted max batch (x baseline):")
        print("| budget | new tokens | baseline | FastV | VTW | VTW per sample | baseline per sample |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['budget']} | {r['new_tokens']} | {r['baseline']['max_batch']} | {r['fastv']['max_batch']} "
                  f"({r['fastv']['ratio']:.2f}x) | {r['vtw']['max_batch']} ({r['vtw']['ratio']:.2f}x) | "
                  f"{format_bytes(r['vtw']['per_sample_bytes'])} | {format_bytes(r['baseline']['per_sample_bytes'])} |")
        short = [r for r in rows if r["new_tokens"] == min(x["new_tokens"] for x in rows)]
        good = all(r["vtw"]["ratio"] is not None and r["vtw"]["ratio"] >= 1.6 for r in short)
        ok &= good
        got = ", ".join(f"{r['vtw']['ratio']:.2f}x at {r['budget']}" for r in short)
        print(f"[{'PASS' if good else 'FAIL'}] predicted max batch, VTW vs baseline at {short[0]['new_tokens']} new "
              f"tokens: {got} (target >= 1.6x)")
        out["predict"] = rows

    if args.json:
        write_atomic(args.json, json.dumps(out, indent=2, default=str) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
