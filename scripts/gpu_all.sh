#!/usr/bin/env bash
# Everything vtw measures on one GPU, into OUTDIR (JSON + markdown), sized for a 10-minute limit:
#   install (bare machine only: venv, torch==2.13.0, vtw)             about 2-3 min (not on a ready machine)
#   1. engine tests in bf16 (flash-attention-2 when installed)         at most 100 s
#   2. `vtw bench --random-init` on LLaVA-1.5-7B and LLaVA-NeXT-7B,
#      bf16, sdpa                                                       about 150 s
#   3. throughput on LLaVA-1.5-7B: batch 8 (tokens/s paired per batch)
#      and the max batch within 24 GiB (what scripts/gpu_throughput.sh
#      measures, sized down; each run killed at its limit)              at most 120 s
#   4. the calibration sweep's cost                                     about 40 s
#   5. step 2 with flash_attention_2, only when installed and time is left
# Steps 1-5 share one budget, VTW_GPU_BUDGET_S (default 420 s): a step that would not fit is
# skipped and the summary says so, so the Python part ends within about 7 minutes. These times
# are estimates from the step sizes; no GPU run of this script has been timed yet. See
# scripts/gpu_all.py for the details.
#
#   bash scripts/gpu_all.sh OUTDIR              # on a GPU machine; installs what is missing
#   bash scripts/gpu_all.sh OUTDIR --dry-run    # anywhere: tiny models on the CPU, no install
#
# On a bare machine (Python 3.10+, an NVIDIA driver and the package index) it makes a virtual
# environment in $VTW_GPU_VENV (default .venv-gpu in the repository, kept between runs) with
# torch==2.13.0 and this package; nothing else is downloaded (random weights, no datasets).
# flash-attn is installed only when a prebuilt wheel exists (building it takes far longer
# than the budget); without it the flash rows are skipped and the summary says so.
# Env: VTW_GPU_BUDGET_S (default 420: the Python part's budget, after installing). Options after
# OUTDIR go to scripts/gpu_all.py (--skip-engine-tests, --skip-throughput, --throughput-s ...).
set -uo pipefail

if [ $# -lt 1 ] || [ "${1:0:1}" = "-" ]; then
  echo "usage: bash scripts/gpu_all.sh OUTDIR [--dry-run]" >&2
  exit 2
fi
OUT="$1"
shift
DRY=""
if [ "${1:-}" = "--dry-run" ]; then DRY="--dry-run"; shift; fi
cd "$(dirname "$0")/.." || exit 2
mkdir -p "$OUT" || { echo "error: cannot create $OUT" >&2; exit 2; }
OUT="$(cd "$OUT" && pwd)"
START=$(date +%s)
say() { echo "[gpu_all $(( $(date +%s) - START ))s] $*" | tee -a "$OUT/gpu_all.log"; }
export HF_HUB_OFFLINE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1

PY="${PYTHON:-python3}"
if [ -z "$DRY" ]; then
  # Use an interpreter that already has a CUDA torch 2.13 and this package, else build the venv.
  if ! "$PY" -c "import torch, vtwcli, sys; sys.exit(0 if torch.__version__.startswith('2.13') and torch.cuda.is_available() else 1)" 2>/dev/null; then
    VENV="${VTW_GPU_VENV:-$PWD/.venv-gpu}"
    if [ ! -x "$VENV/bin/python" ]; then
      say "creating $VENV"
      "$PY" -m venv "$VENV" || { say "error: python3 -m venv failed (install python3-venv)"; exit 2; }
    fi
    PY="$VENV/bin/python"
    say "installing torch==2.13.0 and vtwcli[test] (a few minutes on a bare machine)"
    "$PY" -m pip install -q --upgrade pip >>"$OUT/install.log" 2>&1
    "$PY" -m pip install -q "torch==2.13.0" >>"$OUT/install.log" 2>&1 || { say "error: pip install torch==2.13.0 failed; see $OUT/install.log"; tail -5 "$OUT/install.log"; exit 2; }
    "$PY" -m pip install -q -e ".[test]" "nvidia-ml-py>=12" >>"$OUT/install.log" 2>&1 || { say "error: pip install -e .[test] failed; see $OUT/install.log"; tail -5 "$OUT/install.log"; exit 2; }
  fi
  if ! "$PY" -c "import flash_attn" 2>/dev/null; then
    # only a prebuilt wheel: compiling flash-attn takes tens of minutes
    timeout 120 "$PY" -m pip install -q --only-binary=:all: "flash-attn>=2.5" >>"$OUT/install.log" 2>&1 \
      && say "flash-attn installed from a wheel" \
      || say "note: no prebuilt flash-attn wheel for this machine; flash_attention_2 rows are skipped"
  fi
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || { say "error: torch sees no CUDA device"; exit 2; }
fi

say "running scripts/gpu_all.py $DRY"
"$PY" scripts/gpu_all.py --out "$OUT" $DRY "$@" 2>&1 | tee -a "$OUT/gpu_all.log"
status=${PIPESTATUS[0]}
say "done (exit $status); results in $OUT/summary.md and $OUT/summary.json"
exit "$status"
