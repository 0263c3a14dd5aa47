#!/usr/bin/env bash
# The main job on an offline default: an evaluation. A few GSM8K test problems, core-only and
# guided, where a real local guide (Gemma 3 270M base, from PyPI) writes the strategies and the
# same model is the core; then `gcop report` prints Table 1 and the path of Figure 1. No keys,
# no hub, a few minutes on 2 CPU cores. Extra arguments go to `gcop demo` (e.g. --problems 5).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$REPO/scripts/bootstrap.sh"
cd "$REPO"
exec "${GCOP_VENV:-$REPO/.venv}/bin/gcop" demo "$@"
