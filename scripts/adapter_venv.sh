#!/usr/bin/env bash
# A venv of its own for an RL library whose pins clash with another's (verifiers and OpenEnv pin
# different `mcp` versions): .venv-NAME with gcop-env[NAME] (editable) and pytest, for
# NAME in verifiers | openenv. Idempotent and quick when nothing changed (a stamp of the hash of
# pyproject.toml and of this script). Installed with uv when the main .venv has it (the `dev`
# extra brings it: seconds instead of minutes, from its cache ~/.cache/uv), else with pip.
set -euo pipefail

NAME="${1:?usage: adapter_venv.sh verifiers|openenv}"
case "$NAME" in
    verifiers) MODULE=verifiers.v1; TOP=verifiers ;;
    openenv) MODULE=openenv.core; TOP=openenv ;;
    *) echo "adapter_venv: unknown library $NAME (verifiers or openenv)" >&2; exit 2 ;;
esac
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv-$NAME"
PYTHON_BIN="${PYTHON_BIN:-python3}"
stamp="$VENV/.gcop-installed"
want="$(cat "$REPO/pyproject.toml" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)"
found="import importlib.util as u, sys; sys.exit(not (u.find_spec('gcop_env') and u.find_spec('$TOP')))"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$VENV/bin/python" -c "$found" 2>/dev/null; then
    echo "adapter_venv: $VENV is up to date"
    exit 0
fi
UV="${UV:-$REPO/.venv/bin/uv}"
if [ ! -x "$VENV/bin/python" ]; then
    echo "adapter_venv: creating $VENV"
    "$PYTHON_BIN" -m venv "$VENV"
fi
echo "adapter_venv: installing gcop-env[$NAME] (editable) and pytest into $VENV"
if ! { [ -x "$UV" ] && "$UV" pip install -q --python "$VENV/bin/python" -e "$REPO[$NAME]" "pytest>=8"; }; then
    "$VENV/bin/python" -m pip install -q -e "$REPO[$NAME]" "pytest>=8"
fi
"$VENV/bin/python" -c "import gcop_env, $MODULE"
echo "$want" > "$stamp"
echo "adapter_venv: ready ($("$VENV/bin/python" -m pip list 2>/dev/null | grep -iE "^($NAME|mcp) " | tr -s ' ' | tr '\n' ';'))"
