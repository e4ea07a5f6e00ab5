#!/usr/bin/env bash
# The engine suite on a GPU: flash_attention_2 (plus eager and sdpa) in bfloat16, then the
# float32 suite on the same device, then the overhead benchmark. Needs CUDA, and flash-attn
# for the flash cases (pip install -e .[gpu,test]); without it those cases are skipped and
# the skip reason is printed in the summary, so read it.
#
#   bash scripts/gpu_check.sh            # from the repository root
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1

python - <<'PY'
import importlib.util, torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
print("flash_attn installed:", importlib.util.find_spec("flash_attn") is not None)
PY

echo "== engine suite, cuda, bfloat16 (eager, sdpa, flash_attention_2)"
VTW_TEST_DEVICE=cuda VTW_TEST_DTYPE=bfloat16 python -m pytest -q -ra tests/engine "$@"

echo "== engine suite, cuda, float32 (eager, sdpa; flash cases skip: fp32 is not a flash dtype)"
VTW_TEST_DEVICE=cuda VTW_TEST_DTYPE=float32 python -m pytest -q -ra tests/engine "$@"

echo "== engine overhead, K = N vs no engine (cuda, bfloat16, sdpa)"
python scripts/engine_overhead.py --device cuda --dtype bfloat16 --attn sdpa --layers 16 --hidden 1024 \
    --image-size 336 --repeats 21 --threads 4
