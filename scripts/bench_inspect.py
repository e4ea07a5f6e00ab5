"""Peak memory of `vtw inspect`'s attention probe against a plain forward, on a LLaVA-shaped model.

Builds a random-init LLaVA-1.5-shaped model (32 decoder layers, 576 vision tokens in a
~640-token prompt; the width is a flag, because on a CPU a full 4096-wide model is slow) and
measures, each in a fresh process so that peaks do not mix:

- ``forward``: one plain prefill forward (the unit),
- ``generate``: greedy generate of ``--new-tokens`` tokens,
- ``inspect``: the same generate with the attention probe attached (what `vtw inspect` runs),
- ``maps``: one eager forward with ``output_attentions=True`` (every layer's full map kept:
  the naive way, for contrast).

On the CPU the peak is the process's peak resident set (VmHWM, reset through
/proc/self/clear_refs after the model and inputs exist); on CUDA it is
``torch.cuda.max_memory_allocated``. Reported: the peak, and the peak above what was
resident before the run (the activations: what the probe could add to).

    python scripts/bench_inspect.py                          # CPU, hidden 1024, ~1-2 min on 2 cores
    python scripts/bench_inspect.py --hidden 4096 --device cuda --dtype bf16 --json mem.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

MODES = ("forward", "generate", "inspect", "maps")


def build(layers: int, hidden: int, attn: str, dtype, device: str):
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    heads = max(1, hidden // 128)
    text = LlamaConfig(
        vocab_size=32064, hidden_size=hidden, intermediate_size=int(hidden * 2.6875) // 16 * 16,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
        max_position_embeddings=4096, pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )
    # a small tower: 336 px at patch 14 gives LLaVA-1.5's 576 vision tokens; its memory is not the subject
    vision = CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
                              image_size=336, patch_size=14, projection_dim=64)
    config = LlavaConfig(text_config=text, vision_config=vision, image_token_index=32000, image_seq_length=576)
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration._from_config(config, attn_implementation=attn, dtype=dtype)
    return model.to(device).eval()


def make_inputs(model, device: str, pre: int = 35, post: int = 30):
    import torch

    g = torch.Generator().manual_seed(0)
    ids = [1] + torch.randint(3, 32000, (pre - 1,), generator=g).tolist() + [32000] * 576
    ids += torch.randint(3, 32000, (post,), generator=g).tolist()
    input_ids = torch.tensor([ids], device=device)
    size = model.config.vision_config.image_size
    pix = torch.randn(1, 3, size, size, generator=g).to(device, model.dtype)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "pixel_values": pix}


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure(mode: str, args) -> dict:
    """Runs in its own process: build, then one run of ``mode``, and its peak memory."""
    import gc

    import torch

    torch.set_num_threads(args.threads)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    attn = "eager" if mode == "maps" else args.attn
    model = build(args.layers, args.hidden, attn, dtype, args.device)
    inputs = make_inputs(model, args.device)
    gen = {"max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens, "do_sample": False}
    cuda = args.device.startswith("cuda")
    gc.collect()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets the peak resident set (VmHWM) to the current one
        before = _rss_kib("VmRSS") * 1024
    with torch.inference_mode():
        if mode == "forward":
            model(**inputs, use_cache=False, logits_to_keep=1)
        elif mode == "generate":
            model.generate(**inputs, **gen)
        elif mode == "inspect":
            from vtwcli.archs import get_arch
            from vtwcli.inspect.probe import AttentionProbe

            probe = AttentionProbe(model, get_arch(model))
            with probe.sample(inputs["input_ids"][0]) as rec:
                model.generate(**inputs, **gen)
            assert len(rec.shares) == args.new_tokens
        else:
            out = model(**inputs, use_cache=False, output_attentions=True, logits_to_keep=1)
            assert len(out.attentions) == args.layers
    if cuda:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = _rss_kib("VmHWM") * 1024
    return {"mode": mode, "before_bytes": before, "peak_bytes": peak, "extra_bytes": peak - before,
            "tokens": int(inputs["input_ids"].shape[1])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--new-tokens", type=int, default=8)
    ap.add_argument("--json", default=None, help="write the rows as JSON here")
    ap.add_argument("--one", choices=MODES, help=argparse.SUPPRESS)  # internal: measure one mode in this process
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args)))
        return
    rows = []
    passthrough = [a for a in sys.argv[1:]]
    if "--json" in passthrough:
        i = passthrough.index("--json")
        del passthrough[i : i + 2]
    for mode in MODES:
        out = subprocess.run([sys.executable, __file__, *passthrough, "--one", mode], capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"{mode} failed:\n{out.stderr[-2000:]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    unit = next(r for r in rows if r["mode"] == "forward")
    mib = 1024 * 1024
    print(f"LLaVA-1.5-shaped random model: {args.layers} layers, hidden {args.hidden}, {unit['tokens']}-token prompt "
          f"(576 vision), {args.attn}, {args.dtype}, {args.device}; {args.new_tokens} new tokens")
    print(f"{'mode':<9} {'peak MiB':>9} {'x forward':>9} {'above start MiB':>15} {'x forward':>9}")
    for r in rows:
        print(f"{r['mode']:<9} {r['peak_bytes'] / mib:9.0f} {r['peak_bytes'] / unit['peak_bytes']:9.2f} "
              f"{r['extra_bytes'] / mib:15.1f} {r['extra_bytes'] / max(unit['extra_bytes'], 1):9.2f}")
    ins = next(r for r in rows if r["mode"] == "inspect")
    ratio = ins["peak_bytes"] / unit["peak_bytes"]
    gen = next(r for r in rows if r["mode"] == "generate")
    print(f"inspect peak / plain forward peak = {ratio:.3f} (target <= 1.5: {'met' if ratio <= 1.5 else 'NOT met'}); "
          f"inspect / generate without the probe: peak {ins['peak_bytes'] / gen['peak_bytes']:.3f}, "
          f"above start {ins['extra_bytes'] / max(gen['extra_bytes'], 1):.3f}")
    if args.json:
        from pathlib import Path

        Path(args.json).write_text(json.dumps({"settings": vars(args), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
