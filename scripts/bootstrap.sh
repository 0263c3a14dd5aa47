#!/usr/bin/env bash
# Create .venv (or $GCOP_VENV) and install gcop-env with everything the demo and the tests need.
# Idempotent and quick when nothing changed (a stamp of pyproject.toml's hash).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${GCOP_VENV:-$REPO/.venv}"
PYTHON_BIN="${PYTHON_BIN:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "bootstrap: creating $VENV"
    "$PYTHON_BIN" -m venv "$VENV"
fi
PY="$VENV/bin/python"
stamp="$VENV/.gcop-installed"
want="$(sha256sum "$REPO/pyproject.toml" | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$PY" -c "import gcop_env, torch, trl" 2>/dev/null; then
    echo "bootstrap: $VENV is up to date"
    exit 0
fi

# torch first: a CPU build when one is at hand (this machine has 2.13.0 locally); otherwise
# pip would resolve 'torch' through the deps below and fetch a multi-GB CUDA build.
if ! "$PY" -c "import torch" 2>/dev/null; then
    echo "bootstrap: installing torch"
    "$PY" -m pip install -q "torch==2.13.0" 2>/dev/null \
        || "$PY" -m pip install -q "torch>=2.6" --index-url https://download.pytorch.org/whl/cpu \
        || "$PY" -m pip install -q "torch>=2.6"
fi
echo "bootstrap: installing gcop-env[train,demo,dev,adapters,eval,docs] (editable)"
"$PY" -m pip install -q -e "$REPO[train,demo,dev,adapters,eval,docs]"
echo "$want" > "$stamp"
echo "bootstrap: ready ($("$PY" -c 'import torch, trl, gymnasium; print(f"torch {torch.__version__}, trl {trl.__version__}, gymnasium {gymnasium.__version__}")'))"
