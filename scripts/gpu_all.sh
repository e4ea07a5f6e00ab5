#!/usr/bin/env bash
# Everything vtw measures on one GPU, in about 8 minutes, into OUTDIR (JSON + markdown):
# the engine tests in bf16 (flash-attention-2 when installed), `vtw bench --random-init` on
# LLaVA-1.5-7B and LLaVA-NeXT-7B shapes in bf16 with sdpa (and flash_attention_2 when
# installed), and the calibration sweep's cost. See scripts/gpu_all.py for the details.
#
#   bash scripts/gpu_all.sh OUTDIR              # on a GPU machine; installs what is missing
#   bash scripts/gpu_all.sh OUTDIR --dry-run    # anywhere: tiny models on the CPU, no install
#
# On a bare machine (Python 3.10+, an NVIDIA driver and the package index) it makes a virtual
# environment in $VTW_GPU_VENV (default .venv-gpu in the repository, kept between runs) with
# torch==2.13.0 and this package; nothing else is downloaded (random weights, no datasets).
# flash-attn is installed only when a prebuilt wheel exists (building it takes far longer
# than the budget); without it the flash rows are skipped and the summary says so.
# Env: VTW_GPU_BUDGET_S (default 420: the Python part's budget, after installing).
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
