#!/usr/bin/env bash
# GPU throughput of `vtw bench` on a random-init LLaVA-1.5-7B (fp16, sdpa, K=16): batch 8 with
# tokens/s paired per batch, then the largest batch within a memory budget (measured, with the
# analytic prediction beside it). Each step is bounded by `timeout`; about 3-6 minutes on one
# H100-class GPU. No weights, no network. Prints markdown tables and keeps the JSON results.
#
#   bash scripts/gpu_throughput.sh [OUT_DIR]     # default OUT_DIR: bench_gpu_throughput/
#
# Env: BUDGET (default 24GiB), BATCH (default 8), SAMPLES (default 32: 4 batches),
#      BUDGET_PROMPTS (default 64: the largest batch searched), NEW_TOKENS (default 32),
#      PER_RUN_TIMEOUT seconds (default 240).
set -uo pipefail

OUT="${1:-bench_gpu_throughput}"
BUDGET="${BUDGET:-24GiB}"
BATCH="${BATCH:-8}"
SAMPLES="${SAMPLES:-32}"
BUDGET_PROMPTS="${BUDGET_PROMPTS:-64}"
NEW_TOKENS="${NEW_TOKENS:-32}"
PER_RUN_TIMEOUT="${PER_RUN_TIMEOUT:-240}"
export HF_HUB_OFFLINE=1
mkdir -p "$OUT"

if ! python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "error: no CUDA device visible to torch; this script needs one GPU" >&2
  exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true

COMMON=(--model llava-1.5-7b --random-init --dtype fp16 --device cuda --attn sdpa --k 16 --fastv-k 2
        --fastv-ratio 0.5 --methods baseline,fastv,vtw --max-new-tokens "$NEW_TOKENS" --min-new-tokens "$NEW_TOKENS"
        --warmup 1 --force)

status=0
run() {  # tag, extra args...
  local tag="$1"; shift
  echo
  echo "## llava-1.5-7b fp16 sdpa, ${tag}: vtw bench $*"
  echo
  if ! timeout "$PER_RUN_TIMEOUT" vtw bench "${COMMON[@]}" "$@" \
      --json "$OUT/${tag}.json" --markdown "$OUT/${tag}.md" > "$OUT/${tag}.log" 2>&1; then
    echo "(failed or timed out; last lines of $OUT/${tag}.log:)"
    tail -5 "$OUT/${tag}.log"
    status=1
    return
  fi
  cat "$OUT/${tag}.md"
}

run "batch${BATCH}" --batch-size "$BATCH" --limit "$SAMPLES"
run "budget_${BUDGET}" --memory-budget "$BUDGET" --limit "$BUDGET_PROMPTS" --repeats 2

echo
echo "## Throughput targets: VTW tokens/s >= 1.3x baseline (interval above 1); max batch >= 1.6x baseline"
python - "$OUT" <<'PY'
import glob, json, sys
for path in sorted(glob.glob(f"{sys.argv[1]}/*.json")):
    d = json.load(open(path))
    rows = {r["method"]: r for r in d["rows"]}
    v, b = rows.get("vtw"), rows.get("baseline")
    if not v or not b:
        continue
    ci = v.get("tokens_per_s_ratio_ci95")
    tps = v.get("tokens_per_s_ratio")
    tps_text = "n/a" if tps is None else f"{tps:.2f}x" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
    if d["settings"].get("mode") == "memory-budget":
        print(f"- budget {d['settings']['memory_budget_text']}: max batch baseline {b['max_batch']} "
              f"(predicted {b['max_batch_predicted']}), VTW {v['max_batch']} (predicted {v['max_batch_predicted']}): "
              f"{v['max_batch_ratio'] if v['max_batch_ratio'] is None else round(v['max_batch_ratio'], 2)}x measured, "
              f"{v['max_batch_predicted_ratio'] if v['max_batch_predicted_ratio'] is None else round(v['max_batch_predicted_ratio'], 2)}x "
              f"predicted; tokens/s at max batch {tps_text}")
    else:
        print(f"- batch {d['settings']['batch_size']}: VTW tokens/s {tps_text} of the baseline's")
PY
exit $status
