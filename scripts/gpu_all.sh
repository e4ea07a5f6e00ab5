#!/usr/bin/env bash
# Everything vtw measures on one GPU, into OUTDIR (JSON + markdown), sized for a 10-minute limit:
#   install (only where the machine's python3 cannot run vtw as it is
#   and a package index is reachable: venv, torch==2.13.0, vtw)        about 2-3 min
#   1. engine tests in bf16 (flash-attention-2 when installed)         at most 100 s
#   2. `vtw bench --random-init` on LLaVA-1.5-7B and LLaVA-NeXT-7B,
#      bf16, sdpa (NeXT also fastv-mask: the paper's FastV memory)      about 170 s
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
# vtw runs from this checkout (PYTHONPATH), installed or not. First the machine's own python3
# (or $PYTHON) is asked whether it can run vtw as it is (scripts/gpu_env.py: a CUDA torch,
# transformers in vtw's range, typer, rich, pyyaml, tabulate, pillow, numpy); GPU machines
# with a preinstalled stack and no package index run that way, with no install and no network.
# Otherwise, where a package index is reachable, it makes a virtual environment in
# $VTW_GPU_VENV (default .venv-gpu in the repository, kept between runs) with torch==2.13.0
# and this package; with no index it stops at once and names what is missing. Nothing else is
# downloaded (random weights, no datasets). flash-attn is installed only from a prebuilt wheel
# and only when an index is reachable (building it takes far longer than the budget); without
# it the flash rows are skipped and the summary says so.
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
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # vtw from this checkout, installed or not

PY="${PYTHON:-python3}"
# whether pip can reach a package index (5 s, no retries): a GPU machine may have none
index_reachable() {
  local tmp; tmp=$(mktemp -d)
  "$1" -m pip download -q --no-deps --timeout 5 --retries 0 -d "$tmp" pip >/dev/null 2>&1; local rc=$?
  rm -rf "$tmp"; return $rc
}
if [ -z "$DRY" ]; then
  if ready=$("$PY" scripts/gpu_env.py 2>&1); then
    say "using $PY as it is: ${ready#ready: }"
  else
    say "$PY cannot run vtw as it is: ${ready#not ready: }"
    if ! index_reachable "$PY"; then
      say "error: no package index is reachable to install what is missing; use a python3 that has it (PYTHON=...), or carry the missing packages as wheels and put them on PYTHONPATH"
      exit 2
    fi
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
    ready=$("$PY" scripts/gpu_env.py 2>&1) || { say "error: after installing, $ready"; exit 2; }
    say "installed: ${ready#ready: }"
  fi
  if ! "$PY" -c "import flash_attn" 2>/dev/null; then
    if index_reachable "$PY"; then
      # only a prebuilt wheel: compiling flash-attn takes tens of minutes
      timeout 120 "$PY" -m pip install -q --only-binary=:all: "flash-attn>=2.5" >>"$OUT/install.log" 2>&1 \
        && say "flash-attn installed from a wheel" \
        || say "note: no prebuilt flash-attn wheel for this machine; flash_attention_2 rows are skipped"
    else
      say "note: flash-attn is not installed and no package index is reachable; flash_attention_2 rows are skipped"
    fi
  fi
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || { say "error: torch sees no CUDA device"; exit 2; }
fi

say "running scripts/gpu_all.py $DRY"
"$PY" scripts/gpu_all.py --out "$OUT" $DRY "$@" 2>&1 | tee -a "$OUT/gpu_all.log"
status=${PIPESTATUS[0]}
say "done (exit $status); results in $OUT/summary.md and $OUT/summary.json"
exit "$status"
