#!/usr/bin/env bash
# Multi-device checks (docs/scaling.md), on the bundled testbed; no weights, no
# network. Needs one CUDA GPU; the data-parallel and --device-map auto parts need two.
#
#   bash scripts/gpu_multi.sh [OUT_DIR]        # default OUT_DIR: gpu_multi/
#
# 1. The engine, FastV and the calibration sweep on a model whose decoder layers sit on two
#    devices (cuda:0 + cuda:1, or cuda:0 + cpu with one GPU): same logits and answers as on
#    one device, and withdrawal still changes the logits (scripts/gpu_multi_check.py).
# 2. With >= 2 GPUs: torchrun (nccl) calibrate and bench on 2 ranks vs one process, and
#    `vtw bench --device-map balanced` (auto would keep the tiny testbed on GPU 0).
# About 2-4 minutes. Exit status 1 when any check fails.
set -uo pipefail

OUT="${1:-gpu_multi}"
T="${PER_RUN_TIMEOUT:-240}"
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=2
mkdir -p "$OUT"
status=0

NGPU=$(python -c "import torch; print(torch.cuda.device_count())")
if [ "$NGPU" -lt 1 ]; then
  echo "error: no CUDA device visible to torch; this script needs at least one GPU" >&2
  exit 2
fi
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader 2>/dev/null || true
python -c "import torch, transformers, accelerate; print('torch', torch.__version__, 'transformers', transformers.__version__, 'accelerate', accelerate.__version__)"

echo "== 1. layers on two devices"
if [ "$NGPU" -ge 2 ]; then DEVS="cuda:0 cuda:1"; else DEVS="cuda:0 cpu"; fi
timeout "$T" python scripts/gpu_multi_check.py $DEVS 2>&1 | grep -v "Loading weights" | tee "$OUT/split_devices.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

if [ "$NGPU" -lt 2 ]; then
  echo "== 2. skipped: one GPU (data parallel with nccl and --device-map auto need two)"
  exit $status
fi

echo "== 2a. calibrate: 2 ranks (nccl) vs one process"
timeout "$T" vtw calibrate --samples 8 --no-save --json "$OUT/cal1.json" >/dev/null || status=1
timeout "$T" torchrun --standalone --nproc_per_node 2 -m vtwcli calibrate --samples 8 --no-save \
  --json "$OUT/cal2.json" > "$OUT/cal2.log" 2>&1 || { status=1; tail -20 "$OUT/cal2.log"; }
echo "== 2b. bench: 2 ranks (nccl) vs one process"
timeout "$T" vtw bench --limit 8 --max-new-tokens 8 --k 3 --log-samples --json "$OUT/bench1.json" >/dev/null || status=1
timeout "$T" torchrun --standalone --nproc_per_node 2 -m vtwcli bench --limit 8 --max-new-tokens 8 --k 3 \
  --log-samples --json "$OUT/bench2.json" > "$OUT/bench2.log" 2>&1 || { status=1; tail -20 "$OUT/bench2.log"; }
python - "$OUT" <<'PY' || status=1
import json, sys
out = sys.argv[1]
a, b = (json.load(open(f"{out}/cal{i}.json")) for i in (1, 2))
assert (a["k"], a["world_size"], b["world_size"]) == (b["k"], 1, 2), (a["k"], b["k"])
worst = max(abs(x - y) for k in a["per_sample"] for x, y in zip(a["per_sample"][k], b["per_sample"][k]))
print(f"calibrate: K {a['k']} == {b['k']}, max per-sample KL difference {worst:.2e}")
assert worst < 1e-3 * max(1e-6, max(max(v) for v in a["per_sample"].values()))
a, b = (json.load(open(f"{out}/bench{i}.json")) for i in (1, 2))
assert [s["id"] for s in a["samples"]] == [s["id"] for s in b["samples"]]
assert [s["rank"] for s in b["samples"]] == [i % 2 for i in range(8)]
for ra, rb in zip(a["rows"], b["rows"]):
    assert ra["accuracy"] == rb["accuracy"] and ra["samples"] == rb["samples"] == 8, (ra["method"], ra["accuracy"], rb["accuracy"])
    ranks = ", ".join(f"rank {p['rank']} on {p['device']}: {p['e2e_ms']['median']:.1f}" for p in rb["per_rank"])
    print(f"bench {ra['method']}: accuracy {ra['accuracy']} == {rb['accuracy']}; e2e ms median {ra['e2e_ms']['median']:.1f} (1 process) vs {rb['e2e_ms']['median']:.1f} pooled ({ranks})")
print("data-parallel checks passed")
PY

echo "== 2c. bench --device-map balanced (testbed layers spread evenly over the GPUs)"
timeout "$T" vtw bench --limit 4 --max-new-tokens 8 --k 3 --device-map balanced --json "$OUT/bench_map.json" \
  > "$OUT/bench_map.log" 2>&1 || { status=1; tail -20 "$OUT/bench_map.log"; }
exit $status
