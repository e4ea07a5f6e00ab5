"""What the KL sweep costs: the one-pass sweep against the paper's loop, in full forwards per sample.

Builds a random-init LLaVA-shaped model (narrow but deep: by default 24 decoder layers of
hidden 256, 576 vision tokens in a ~640-token prompt, as LLaVA-1.5), then for each sample:
times one plain full forward (the unit), the one-pass sweep over K = k_min..N, and the
paper's loop (one full forward + one withdrawn forward per K), and checks both give the same
KL curve. Costs are given by the paper's FLOPs formula (2s²h + 12sh² per layer) and as
measured time. Random weights are enough: cost depends only on shapes.

    python scripts/bench_calibrate.py                       # defaults, ~2 min on 2 CPU cores
    python scripts/bench_calibrate.py --layers 32 --hidden 512 --samples 2 --json bench.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def build(layers: int, hidden: int, attn: str):
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    text = LlamaConfig(
        vocab_size=32064, hidden_size=hidden, intermediate_size=int(hidden * 8 / 3) // 16 * 16,
        num_hidden_layers=layers, num_attention_heads=max(1, hidden // 64), num_key_value_heads=max(1, hidden // 64),
        max_position_embeddings=4096, pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )
    # a small tower: 336 px at patch 14 gives LLaVA-1.5's 576 vision tokens; its cost is not the subject
    vision = CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
                              image_size=336, patch_size=14, projection_dim=64)
    config = LlavaConfig(text_config=text, vision_config=vision, image_token_index=32000, image_seq_length=576)
    config._attn_implementation = attn
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config).eval()
    with torch.no_grad():  # sharper than the default init, so withdrawal visibly moves the logits
        for p in model.model.language_model.parameters():
            if p.dim() == 2:
                p.mul_(3.0)
    return model


def make_inputs(model, seed: int, pre: int, post: int):
    import torch

    g = torch.Generator().manual_seed(seed)
    image_id = model.config.image_token_index
    ids = [1] + torch.randint(3, 32000, (pre,), generator=g).tolist() + [image_id] * 576
    ids += torch.randint(3, 32000, (post,), generator=g).tolist()
    input_ids = torch.tensor([ids])
    size = model.config.vision_config.image_size
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "pixel_values": torch.randn(1, 3, size, size, generator=g),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--samples", type=int, default=2, help="prompts timed (each runs both sweeps)")
    ap.add_argument("--k-min", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--attn", default="sdpa")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args()

    import torch
    from rich.console import Console
    from rich.table import Table

    from vtwcli.calibrate.api import sweep_cost_formula
    from vtwcli.calibrate.sweep import SweepStats, fast_sweep, model_parts, slow_sweep

    torch.set_num_threads(args.threads)
    model = build(args.layers, args.hidden, args.attn)
    parts = model_parts(model)
    n = parts.num_layers
    ks = list(range(args.k_min, n + 1))
    rows = []
    for i in range(args.samples):
        inputs = make_inputs(model, seed=i, pre=30 + i, post=34 - i)
        def timed_full(inputs=inputs) -> float:
            with torch.inference_mode():
                t0 = time.perf_counter()
                model(**inputs, use_cache=False)
                return time.perf_counter() - t0

        timed_full()  # warm-up, not timed
        # the minimum of repeats: on a shared machine other work only ever adds time
        full = [timed_full() for _ in range(2)]
        fast_times = []
        for _ in range(2):
            fast_stats = SweepStats()
            t0 = time.perf_counter()
            fast = fast_sweep(model, inputs, ks, parts=parts, stats=fast_stats)
            fast_times.append(time.perf_counter() - t0)
        full.append(timed_full())
        t_full, t_fast = min(full), min(fast_times)
        slow_stats = SweepStats()
        t0 = time.perf_counter()
        slow = slow_sweep(model, inputs, ks, parts=parts, stats=slow_stats)
        t_slow = time.perf_counter() - t0
        diff = max(abs(fast[k][0] - slow[k][0]) for k in ks)
        s, t = fast_stats.prompt_lengths[0], fast_stats.text_lengths[0]
        f_fast, f_slow = sweep_cost_formula(ks, n, s, t, parts.text_config.hidden_size)
        rows.append({
            "prompt_tokens": s, "vision_tokens": s - t, "full_forward_s": t_full,
            "fast_s": t_fast, "slow_s": t_slow,
            "fast_measured": t_fast / t_full, "slow_measured": t_slow / t_full,
            "fast_formula": f_fast, "slow_formula": f_slow,
            "max_abs_kl_diff": diff, "kl_at_k_min": fast[ks[0]][0],
        })

    table = Table(
        title=f"KL sweep over K={ks[0]}..{n}, in full forwards per sample\n(LLaVA-shaped random model: {n} "
              f"layers, hidden {args.hidden}, {args.attn}, {args.threads} threads)",
        caption="F: the paper's FLOPs formula; T: measured time / one full forward's time",
    )
    for col in ("sample", "tokens/vis", "full fwd", "1-pass F", "1-pass T", "loop F", "loop T", "speed-up",
                "max dKL"):
        table.add_column(col, justify="right")
    for i, r in enumerate(rows):
        table.add_row(
            str(i), f"{r['prompt_tokens']} / {r['vision_tokens']}", f"{r['full_forward_s'] * 1000:.0f} ms",
            f"{r['fast_formula']:.2f}", f"{r['fast_measured']:.2f}", f"{r['slow_formula']:.2f}",
            f"{r['slow_measured']:.2f}", f"{r['slow_s'] / r['fast_s']:.1f}x", f"{r['max_abs_kl_diff']:.1e}",
        )
    Console(width=max(Console().width, 110)).print(table)
    summary = {
        "layers": n, "hidden": args.hidden, "k_min": ks[0], "attn": args.attn, "threads": args.threads,
        "torch": torch.__version__, "samples": rows,
        "mean_fast_measured": statistics.mean(r["fast_measured"] for r in rows),
        "mean_slow_measured": statistics.mean(r["slow_measured"] for r in rows),
        "mean_fast_formula": statistics.mean(r["fast_formula"] for r in rows),
        "mean_slow_formula": statistics.mean(r["slow_formula"] for r in rows),
    }
    print(
        f"mean: one-pass sweep {summary['mean_fast_formula']:.2f} (formula) / {summary['mean_fast_measured']:.2f} "
        f"(measured) full forwards per sample; paper's loop {summary['mean_slow_formula']:.2f} / "
        f"{summary['mean_slow_measured']:.2f}; target <= 2.5"
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(summary, fh, indent=2, default=str)


if __name__ == "__main__":
    main()
