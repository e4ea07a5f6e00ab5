#!/usr/bin/env python
"""Prefill TFLOPs of every registered alias: the paper's formula next to the architecture-exact count.

Each model is evaluated at one image's worth of vision tokens (its shipped `vision_tokens.per_image`)
plus `--text` text tokens, with the vision block starting at position `--vis-start` (after the
chat template's first tokens), as the paper does for LLaVA-1.5 (576 + ~65 tokens on MME).
VTW withdraws the vision tokens before layer K = N/2 (or `--k`). Columns:

  paper: 2(2 s^2 h + 12 s h^2) per layer (vtwcli.bench.flops); exact: vtwcli.bench.exact_flops with
  attention over the causal/windowed pairs; dense: the same with every query against every key.

Builds every decoder on the meta device (no memory, no weights); about a minute on a CPU.

  python scripts/flops_table.py > flops.md
"""

from __future__ import annotations

import argparse


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--text", type=int, default=65, help="text tokens around the image (default 65)")
    ap.add_argument("--vis-start", type=int, default=5, help="position of the first vision token (default 5)")
    ap.add_argument("--k", type=int, default=None, help="VTW's K (default: half the decoder layers)")
    args = ap.parse_args()

    from vtwcli.bench.exact_flops import exact_prefill_tflops
    from vtwcli.bench.flops import prefill_tflops
    from vtwcli.models import SPECS

    print("| alias | layers | h | s (vision) | K | paper base | paper VTW | x | exact base | exact VTW | x | "
          "dense base | dense VTW | x |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for alias, spec in SPECS.items():
        shipped = spec.shipped()
        cfg, n_vis = shipped["config"], int(shipped["vision_tokens"]["per_image"])
        text = cfg["text_config"]
        n, h = int(text["num_hidden_layers"]), int(text["hidden_size"])
        k = args.k if args.k is not None else n // 2
        s = n_vis + args.text
        paper = [prefill_tflops(m, s=s, n_vis=n_vis, hidden_size=h, num_layers=n, k=k) for m in ("baseline", "vtw")]
        cells = [alias, n, h, f"{s} ({n_vis})", k, *_pair(paper)]
        for mode in ("attended", "dense"):
            exact = [
                exact_prefill_tflops(cfg, m, s=s, n_vis=n_vis, k=k, vis_start=args.vis_start, attention=mode)
                for m in ("baseline", "vtw")
            ]
            cells += _pair(exact)
        print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)
    return 0


def _pair(values: list[float]) -> list[str]:
    base, vtw = values
    return [f"{base:.3g}", f"{vtw:.3g}", f"{vtw / base:.2f}"]


if __name__ == "__main__":
    raise SystemExit(main())
