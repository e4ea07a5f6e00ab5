#!/usr/bin/env bash
# GPU benchmark of `vtw bench` on random-init LLaVA-1.5-7B and LLaVA-NeXT-7B shapes, bf16,
# with sdpa and (when flash-attn is installed) flash_attention_2. About 4-8 minutes on one
# H100-class GPU; no weights, no network. Prints markdown tables to paste into docs/results.md
# and keeps the JSON results.
#
#   bash scripts/gpu_bench.sh [OUT_DIR]          # default OUT_DIR: bench_gpu/
#
# Env: SAMPLES (default 10), NEW_TOKENS (default 32), PER_RUN_TIMEOUT seconds (default 150).
set -uo pipefail

OUT="${1:-bench_gpu}"
SAMPLES="${SAMPLES:-10}"
NEW_TOKENS="${NEW_TOKENS:-32}"
PER_RUN_TIMEOUT="${PER_RUN_TIMEOUT:-150}"
export HF_HUB_OFFLINE=1
mkdir -p "$OUT"

if ! python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "error: no CUDA device visible to torch; this script needs one GPU" >&2
  exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
python - <<'PY'
import importlib.metadata as md, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "device", torch.cuda.get_device_name(0))
for p in ("transformers", "flash-attn", "nvidia-ml-py"):
    try:
        print(p, md.version(p))
    except md.PackageNotFoundError:
        print(p, "not installed")
PY

ATTNS="sdpa"
if python -c "import flash_attn" 2>/dev/null; then
  ATTNS="sdpa flash_attention_2"
else
  echo "note: flash-attn is not installed; only sdpa is measured (pip install flash-attn to add it)"
fi

status=0
for model in llava-1.5-7b llava-next-7b; do
  for attn in $ATTNS; do
    tag="${model}_${attn}"
    echo
    echo "## ${model}, bf16, ${attn} (random init, ${SAMPLES} samples, ${NEW_TOKENS} new tokens, K=16, FastV K=2 R=0.5)"
    echo
    # `--methods` keeps FastV: with flash-attention its layer-K scores come from the engine's own
    # softmax over the last query (flash returns no weights), as in docs/engine.md.
    if ! timeout "$PER_RUN_TIMEOUT" vtw bench --model "$model" --random-init --dtype bf16 --device cuda \
        --attn "$attn" --k 16 --fastv-k 2 --fastv-ratio 0.5 --methods baseline,fastv,vtw \
        --limit "$SAMPLES" --max-new-tokens "$NEW_TOKENS" --warmup 1 \
        --json "$OUT/${tag}.json" --markdown "$OUT/${tag}.md" > "$OUT/${tag}.log" 2>&1; then
      echo "(failed or timed out; last lines of $OUT/${tag}.log:)"
      tail -5 "$OUT/${tag}.log"
      status=1
      continue
    fi
    cat "$OUT/${tag}.md"
  done
done

echo
echo "## Targets: prefill ratio within 0.05 of the FLOPs ratio; NeXT per-sample memory <= 0.65x"
python - "$OUT" <<'PY'
import glob, json, sys
for path in sorted(glob.glob(f"{sys.argv[1]}/*.json")):
    d = json.load(open(path))
    rows = {r["method"]: r for r in d["rows"]}
    v = rows.get("vtw")
    if not v or v.get("prefill_ratio") is None:
        continue
    gap = abs(v["prefill_ratio"] - v["tflops_ratio"])
    mem = v.get("per_sample_mem_ratio")
    print(f"- {d['model']['alias']} {d['settings']['attn']}: VTW prefill {v['prefill_ratio']:.3f}x vs FLOPs "
          f"{v['tflops_ratio']:.3f}x (gap {gap:.3f}, {'ok' if gap <= 0.05 else 'MISSED'}); per-sample memory "
          f"{'n/a' if mem is None else f'{mem:.3f}x'}; e2e {v['e2e_ratio']:.3f}x; KV {v['kv_ratio']:.3f}x")
PY
exit $status
