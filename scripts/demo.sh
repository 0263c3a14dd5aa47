#!/usr/bin/env bash
# The main job on an offline default: a few GSM8K problems through GCoP-GSM8K-v0 with a local
# core (Gemma 3 270M base, from PyPI), printing every reward term and the cost. Extra arguments
# go to `gcop demo` (e.g. --problems 5).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$REPO/scripts/bootstrap.sh"
cd "$REPO"
exec "${GCOP_VENV:-$REPO/.venv}/bin/gcop" demo "$@"
