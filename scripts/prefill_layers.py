#!/usr/bin/env python
"""Where a prefill's time goes: the decoder layers against everything else, baseline and VTW.

Runs one plain forward of a ~630-token LLaVA-1.5-shaped prompt (576 vision tokens; the model of
scripts/bench_cpu.py) with and without withdrawal, the two interleaved, and times the decoder
layers with forward hooks. It shows how far the layers' own time ratio is from their FLOPs
ratio (short sequences after withdrawal run at a lower rate), apart from the work outside the
layers (vision tower, embeddings, the language-model head over every position in a plain
forward).

A third row is the best any withdrawal could do: a plain forward (no engine) of a text-only
prompt as long as what VTW keeps. Its layers K..N-1 are what withdrawal would cost with zero
engine work; the rows "vtw" and "ideal" differ only by the engine's own per-layer work.

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
    layers = loaded.arch.decoder_layers(model)
    clock = {"start": 0.0, "layers": [0.0] * len(layers)}

    def hooks(j: int):
        def before(module, a, kw):
            clock["start"] = time.perf_counter()

        def after(module, a, kw, out):
            clock["layers"][j] += time.perf_counter() - clock["start"]

        return before, after

    for j, layer in enumerate(layers):
        before, after = hooks(j)
        layer.register_forward_pre_hook(before, with_kwargs=True)
        layer.register_forward_hook(after, with_kwargs=True)

    with torch.no_grad(), vtwcli.withdraw(model, k=k) as handle:
        model(**batch)
        kept = handle.last_prefill.kept[0]
    ids = batch["input_ids"][0]
    vision = torch.isin(ids, torch.tensor(loaded.arch.placeholder_ids(model.config)))
    text_ids = ids[~vision][:kept]
    if text_ids.numel() < kept:  # pad the text-only prompt with its own words to the kept length
        text_ids = text_ids.repeat(kept // text_ids.numel() + 1)[:kept]
    text = {"input_ids": text_ids[None], "attention_mask": torch.ones(1, kept, dtype=torch.long)}

    def timed(ctx, inputs) -> tuple[float, float, float]:
        clock["layers"] = [0.0] * len(layers)
        start = time.perf_counter()
        with torch.no_grad(), ctx:
            model(**inputs)
        return time.perf_counter() - start, sum(clock["layers"]), sum(clock["layers"][k:])

    runs: dict[str, list[tuple[float, float, float]]] = {"baseline": [], "vtw": [], "ideal": []}
    for _ in range(args.repeats + 2):
        runs["baseline"].append(timed(contextlib.nullcontext(), batch))
        runs["vtw"].append(timed(vtwcli.withdraw(model, k=k), batch))
        runs["ideal"].append(timed(contextlib.nullcontext(), text))
    base, vtw, ideal = runs["baseline"][2:], runs["vtw"][2:], runs["ideal"][2:]
    print(f"prompt {ids.numel()} tokens ({kept} kept from layer {k} on), hidden {args.hidden}, {args.layers} layers, "
          f"VTW K={k}, {args.threads} threads, {args.repeats} interleaved triples (medians)")  # fmt: skip
    med = statistics.median
    for name, rows in (("baseline", base), ("vtw", vtw)):
        total, layers_t = med(r[0] for r in rows), med(r[1] for r in rows)
        print(f"{name:9s} forward {total * 1e3:7.1f} ms   decoder layers {layers_t * 1e3:7.1f} ms   "
              f"outside the layers {(total - layers_t) * 1e3:6.1f} ms   layers {k}..{args.layers - 1} "
              f"{med(r[2] for r in rows) * 1e3:6.1f} ms")  # fmt: skip
    print(f"ideal     layers {k}..{args.layers - 1} of a plain {kept}-token text-only forward "
          f"{med(r[2] for r in ideal) * 1e3:6.1f} ms")  # fmt: skip
    print(f"vtw/baseline: whole forward {med(v[0] / b[0] for v, b in zip(vtw, base, strict=True)):.3f}, "
          f"decoder layers only {med(v[1] / b[1] for v, b in zip(vtw, base, strict=True)):.3f}")  # fmt: skip
    # the best withdrawal: vtw's own layers < K (the same work as the baseline's) plus the ideal's layers >= K
    best = med((v[1] - v[2] + i[2]) / b[1] for v, i, b in zip(vtw, ideal, base, strict=True))
    print(f"decoder layers with no engine work after K (ideal): {best:.3f} of the baseline; "
          f"vtw's layers {k}..{args.layers - 1} / ideal's: {med(v[2] / i[2] for v, i in zip(vtw, ideal, strict=True)):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
