#!/usr/bin/env bash
# Make a Docker engine and the gcop sandbox image available on this machine (idempotent).
#
#   1. installs docker.io and debootstrap from Debian's packages when they are missing;
#   2. starts dockerd in the background when no engine answers (log: /tmp/gcop-dockerd.log);
#   3. builds the sandbox image offline (debootstrap + docker import) when it is missing or was
#      built from another recipe than this checkout's (a label holds the recipe's hash).
#
# Needs root for steps 1-2 when they have anything to do. Used by the README's test command and CI.
set -euo pipefail

IMAGE="${GCOP_SANDBOX_IMAGE:-gcop-sandbox:latest}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
PYTHON="${PYTHON:-python3}"
VENV="${GCOP_VENV:-$REPO/.venv}"
if [ -x "$VENV/bin/python" ]; then PYTHON="$VENV/bin/python"; fi

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

need_pkgs=()
command -v dockerd >/dev/null 2>&1 || need_pkgs+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need_pkgs+=(debootstrap)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
    echo "setup_docker: installing ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
    echo "setup_docker: starting dockerd (log: /tmp/gcop-dockerd.log)"
    # nohup + setsid: the engine must outlive this script.
    as_root setsid nohup dockerd >/tmp/gcop-dockerd.log 2>&1 < /dev/null &
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
    if ! docker info >/dev/null 2>&1; then
        echo "setup_docker: dockerd did not come up; last lines of /tmp/gcop-dockerd.log:" >&2
        tail -n 30 /tmp/gcop-dockerd.log >&2 || true
        exit 1
    fi
fi

# The image carries a hash of the recipe it was built from (label org.gcop.sandbox.recipe); an image
# from an older recipe (e.g. without the scientific packages) is rebuilt, never silently used.
if ! "$PYTHON" -c "import gcop_env.cli.sandbox" >/dev/null 2>&1; then
    echo "setup_docker: gcop_env is not installed in $PYTHON; run scripts/bootstrap.sh first" >&2
    exit 1
fi
want="$("$PYTHON" -c 'from gcop_env.sandbox.image import recipe_hash; print(recipe_hash())')"
have="$(docker image inspect -f '{{ index .Config.Labels "org.gcop.sandbox.recipe" }}' "$IMAGE" 2>/dev/null || true)"
if [ -n "$have" ] && [ "$have" = "$want" ]; then
    echo "setup_docker: image $IMAGE present (recipe $want)"
else
    if docker image inspect "$IMAGE" >/dev/null 2>&1; then
        echo "setup_docker: image $IMAGE was built from another recipe (${have:-unlabelled}, want $want): rebuilding"
    fi
    echo "setup_docker: building $IMAGE offline (debootstrap + the scientific packages, a few minutes)"
    as_root "$PYTHON" -m gcop_env.cli.sandbox build-image --offline --if-outdated --tag "$IMAGE"
fi
echo "setup_docker: ready"
