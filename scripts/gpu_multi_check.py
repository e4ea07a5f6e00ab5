"""Withdrawal on a model whose decoder layers sit on two devices (run by scripts/gpu_multi.sh).

The testbed's lower decoder layers go to device A and the upper ones to device B with
accelerate's dispatch (the placement ``--device-map auto`` produces for a model larger than
one GPU). For K at the boundary (layer K-1 on A, layer K on B), inside each half, and for
FastV, the logits must equal those of the same weights on one device, and withdrawal must
change them; the calibration sweep must give the same curve. Exit 1 on any mismatch.

    python scripts/gpu_multi_check.py cuda:0 cuda:1     # two GPUs
    python scripts/gpu_multi_check.py cuda:0 cpu        # one GPU: upper layers run on the CPU
    python scripts/gpu_multi_check.py cpu cpu           # a dry run of this script on the CPU
"""

from __future__ import annotations

import copy
import sys

import torch


def split_map(model, layers, boundary: int, dev_a: str, dev_b: str) -> dict[str, str]:
    out: dict[str, str] = {}

    def walk(module, prefix: str) -> None:
        for name, child in module.named_children():
            full = f"{prefix}{name}"
            if child is layers:
                for i in range(len(layers)):
                    out[f"{full}.{i}"] = dev_a if i < boundary else dev_b
            elif any(m is layers for m in child.modules()):
                walk(child, full + ".")
            else:
                out[full] = dev_a

    walk(model, "")
    # the final norm and lm_head follow the last layer, as accelerate's auto placement does
    for name in list(out):
        if name.endswith("norm") or name == "lm_head":
            out[name] = dev_b
    return out


def main(dev_a: str, dev_b: str) -> int:
    from accelerate import dispatch_model

    from vtwcli.calibrate import calibrate
    from vtwcli.data import get_task
    from vtwcli.engine import withdraw
    from vtwcli.models import load_model

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    ref = load_model("testbed", device="cuda" if dev_a.startswith("cuda") else "cpu", dtype="fp32")
    ref.model.to(dev_a)
    ref.device = dev_a
    layers = ref.arch.decoder_layers(ref.model)
    n = len(layers)
    boundary = n // 2
    split = copy.copy(ref)
    split.model = copy.deepcopy(ref.model).to("cpu")
    dmap = split_map(split.model, ref.arch.decoder_layers(split.model), boundary, dev_a, dev_b)
    # With a GPU as main device accelerate would only *store* "cpu" modules there and run them
    # on the GPU; main device "cpu" makes them really run on the CPU (two execution devices).
    main_device = "cpu" if "cpu" in (dev_a, dev_b) else dev_a
    split.model = dispatch_model(split.model, device_map=dmap, main_device=main_device, force_hooks=True)
    split.device = main_device
    execution = {str(getattr(getattr(m, "_hf_hook", None), "execution_device", None))
                 for m in ref.arch.decoder_layers(split.model)}  # fmt: skip
    print(f"execution devices of the decoder layers: {sorted(execution)}")
    placed = {str(p.device) for p in ref.arch.decoder_layers(split.model)[-1].parameters()}
    print(f"layers 0..{boundary - 1} on {dev_a}, {boundary}..{n - 1} on {dev_b} (last layer weights on {placed})")

    task = get_task("shapes", limit=3, seed=7)
    inputs = ref.prepare([task.prompt(r) for r in task.records], images=[task.images(r) for r in task.records])

    def logits(lm):
        with torch.inference_mode():
            return lm.model(**inputs, use_cache=False).logits[:, -1].float().cpu()

    failures = []
    full = logits(ref)
    if not torch.allclose(logits(split), full, atol=1e-4):
        failures.append("no engine: split model's logits differ from the one-device model's")
    cases = [("vtw", boundary), ("vtw", boundary - 1), ("vtw", boundary + 1), ("vtw", 1), ("fastv", boundary),
             ("rand", boundary)]  # fmt: skip
    for method, k in cases:
        try:
            with withdraw(ref.model, k, method=method):
                want = logits(ref)
            with withdraw(split.model, k, method=method):
                got = logits(split)
                gen = split.generate(inputs, max_new_tokens=4)
            with withdraw(ref.model, k, method=method):
                gen_ref = ref.generate(inputs, max_new_tokens=4)
        except Exception as err:  # noqa: BLE001 - reported with the case that raised it
            failures.append(f"{method} K={k}: {type(err).__name__}: {str(err).splitlines()[0]}")
            continue
        diff = (got - want).abs().max().item()
        moved = (got - full).abs().max().item()
        ok = diff < 1e-4 and moved > 1e-4 and gen == gen_ref
        print(f"{method:5s} K={k}: max |split - one device| = {diff:.2e}, max |withdrawn - full| = {moved:.2e}, "
              f"generate equal: {gen == gen_ref} -> {'ok' if ok else 'MISMATCH'}")  # fmt: skip
        if not ok:
            failures.append(f"{method} K={k}: diff {diff:.2e}, change {moved:.2e}, generate equal {gen == gen_ref}")

    try:
        a = calibrate(ref, "shapes", samples=3, seed=3, write=False)
        b = calibrate(split, "shapes", samples=3, seed=3, write=False)
        worst = max(abs(x - y) for k in a.per_sample for x, y in zip(a.per_sample[k], b.per_sample[k], strict=True))
        print(f"calibration sweep: K {a.k} vs {b.k}, max per-sample KL difference {worst:.2e}")
        if a.k != b.k or worst > 1e-5:
            failures.append(f"calibration differs: K {a.k} vs {b.k}, max KL difference {worst:.2e}")
    except Exception as err:  # noqa: BLE001
        failures.append(f"calibration sweep: {type(err).__name__}: {str(err).splitlines()[0]}")

    for f in failures:
        print("FAIL:", f)
    print("all checks passed" if not failures else f"{len(failures)} check(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    torch.set_num_threads(2)
    if any(a in ("-h", "--help") for a in sys.argv[1:]):
        print("usage: gpu_multi_check.py [DEVICE_A DEVICE_B]   (default: cuda:0 cuda:1)\n" + (__doc__ or ""))
        sys.exit(0)
    sys.exit(main(*(sys.argv[1:3] if len(sys.argv) >= 3 else ("cuda:0", "cuda:1"))))
