#!/usr/bin/env python
"""Can this Python run vtw's GPU scripts as it is, with the repository on PYTHONPATH and no install?

A GPU machine may have no package index at all, only a preinstalled stack (PyTorch,
transformers, ...). scripts/gpu_all.sh asks this first and uses that interpreter when it can,
instead of building a virtual environment it could not fill. Checked against pyproject.toml:

- required: transformers within the range vtw declares (the engine relies on its masking API),
  and typer, rich, pyyaml, tabulate, pillow and numpy importable; torch importable and (unless
  ``--allow-cpu``) seeing a CUDA device;
- noted, not required: a torch outside the declared range (every result records the versions),
  and the optional nvidia-ml-py (NVML memory columns), flash-attn (flash_attention_2 rows) and
  pytest (the engine-test step).

Prints one line, ``ready: ...`` (exit 0) or ``not ready: ...`` (exit 1).

  python scripts/gpu_env.py              # on the GPU machine
  python scripts/gpu_env.py --allow-cpu  # anywhere: the same checks without a GPU
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# import name -> distribution name, for what vtw imports on the GPU path
REQUIRED_IMPORTS = {"typer": "typer", "rich": "rich", "yaml": "pyyaml", "tabulate": "tabulate", "PIL": "pillow",
                    "numpy": "numpy"}  # fmt: skip
OPTIONAL = {"pynvml": "nvidia-ml-py (NVML memory columns)", "flash_attn": "flash-attn (flash_attention_2 rows)",
            "pytest": "pytest (the engine-test step)"}  # fmt: skip


def declared(name: str) -> str | None:
    """The version range pyproject.toml declares for dependency ``name`` (e.g. ">=5.14,<5.25")."""
    text = (ROOT / "pyproject.toml").read_text()
    match = re.search(rf'^\s*"{re.escape(name)}\s*([<>=!~][^";]*)"', text, re.M)
    return match.group(1).strip() if match else None


def in_range(version: str, spec: str | None) -> bool:
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    if not spec:
        return True
    return Version(Version(version).base_version) in SpecifierSet(spec)


def check(allow_cpu: bool = False) -> tuple[bool, list[str], list[str]]:
    """(ready, what is there / noted, what is missing)."""
    have: list[str] = []
    missing: list[str] = []
    try:
        import torch
    except ImportError as err:
        return False, have, [f"torch ({err})"]
    torch_spec = declared("torch")
    note = "" if in_range(torch.__version__, torch_spec) else f" (outside the tested {torch_spec}; results record it)"
    have.append(f"torch {torch.__version__}{note}")
    if torch.cuda.is_available():
        have.append(f"CUDA device {torch.cuda.get_device_name(0)}")
    elif not allow_cpu:
        missing.append("a CUDA device (torch sees none)")
    try:
        tf_version = importlib.metadata.version("transformers")
        importlib.import_module("transformers")
    except (ImportError, importlib.metadata.PackageNotFoundError) as err:
        missing.append(f"transformers ({err})")
    else:
        tf_spec = declared("transformers")
        if in_range(tf_version, tf_spec):
            have.append(f"transformers {tf_version}")
        else:
            missing.append(f"transformers {tf_spec} (this one is {tf_version})")
    for module, dist in REQUIRED_IMPORTS.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(dist)
    absent = []
    for module, what in OPTIONAL.items():
        try:
            importlib.import_module(module)
        except ImportError:
            absent.append(what)
    if absent:
        have.append("without " + ", ".join(absent))
    return not missing, have, missing


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--allow-cpu", action="store_true", help="do not require a CUDA device")
    args = ap.parse_args()
    ready, have, missing = check(args.allow_cpu)
    if ready:
        print("ready: " + "; ".join(have))
        return 0
    print("not ready: missing " + ", ".join(missing) + (f" (found: {'; '.join(have)})" if have else ""))
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
