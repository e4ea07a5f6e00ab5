#!/usr/bin/env python
"""Where a prefill's time goes: the decoder layers against everything else, baseline and VTW.

Runs one plain forward of a ~630-token LLaVA-1.5-shaped prompt (576 vision tokens; the model of
scripts/bench_cpu.py) with and without withdrawal, the two interleaved, and times the decoder
layers with forward hooks. It shows how far the layers' own time ratio is from their FLOPs
ratio (short sequences after withdrawal run at a lower rate), apart from the work outside the
layers (vision tower, embeddings, the language-model head over every position in a plain
forward).

  python scripts/prefill_layers.py --threads 2 --hidden 512 --repeats 12
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--k", type=int, default=None, help="VTW's K (default: half the layers)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=12, help="timed pairs after 2 warm-up pairs")
    args = ap.parse_args()

    import torch
    from PIL import Image

    import vtwcli
    from vtwcli.bench.shaped import llava_shaped

    torch.set_num_threads(args.threads)
    loaded = llava_shaped(hidden_size=args.hidden, num_layers=args.layers)
    model, k = loaded.model, args.k or args.layers // 2
    batch = loaded.prepare([" ".join(["word"] * 50)], images=[Image.new("RGB", (640, 480), (120, 30, 200))])
    clock = {"start": 0.0, "layers": 0.0}

    def before(module, a, kw):
        clock["start"] = time.perf_counter()

    def after(module, a, kw, out):
        clock["layers"] += time.perf_counter() - clock["start"]

    for layer in loaded.arch.decoder_layers(model):
        layer.register_forward_pre_hook(before, with_kwargs=True)
        layer.register_forward_hook(after, with_kwargs=True)

    def timed(ctx) -> tuple[float, float]:
        clock["layers"] = 0.0
        start = time.perf_counter()
        with torch.no_grad(), ctx:
            model(**batch)
        return time.perf_counter() - start, clock["layers"]

    runs: dict[str, list[tuple[float, float]]] = {"baseline": [], "vtw": []}
    for _ in range(args.repeats + 2):
        runs["baseline"].append(timed(contextlib.nullcontext()))
        runs["vtw"].append(timed(vtwcli.withdraw(model, k=k)))
    base, vtw = runs["baseline"][2:], runs["vtw"][2:]
    print(f"prompt {batch['input_ids'].shape[1]} tokens, hidden {args.hidden}, {args.layers} layers, VTW K={k}, "
          f"{args.threads} threads, {args.repeats} interleaved pairs (medians)")  # fmt: skip
    for name, rows in (("baseline", base), ("vtw", vtw)):
        total, layers = statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows)
        print(f"{name:9s} forward {total * 1e3:7.1f} ms   decoder layers {layers * 1e3:7.1f} ms   "
              f"outside the layers {(total - layers) * 1e3:6.1f} ms")  # fmt: skip
    print(f"vtw/baseline: whole forward {statistics.median(v[0] / b[0] for v, b in zip(vtw, base, strict=True)):.3f}, "
          f"decoder layers only {statistics.median(v[1] / b[1] for v, b in zip(vtw, base, strict=True)):.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
