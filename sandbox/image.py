"""Build and check the Docker image the sandbox runs in: Python 3, pytest and what KodCode imports.

KodCode's solutions and tests import the scientific stack (numpy, pandas, scipy, scikit-learn,
matplotlib, sympy, networkx); without it a *correct* answer would fail with
``ModuleNotFoundError`` and bias every reward. Two ways to build the image:

* ``offline=True`` (no registry needed, like CI here): ``debootstrap --variant=minbase
  --include=<PACKAGES> bookworm DIR`` from a Debian mirror (Debian's own ``python3-*`` builds),
  then ``docker import`` of DIR as a tarball. Needs root and ``debootstrap``; a few minutes.
* ``offline=False``: ``docker build`` of ``sandbox/image/Dockerfile`` (python:3.11-slim + the
  same packages from PyPI) from a registry.

Every image carries a label with a hash of the recipe it was built from (:func:`recipe_hash`), so
``scripts/setup_docker.sh`` (``gcop sandbox build-image --if-outdated``) rebuilds an image made
from an older recipe instead of silently using it. The tag defaults to ``$GCOP_SANDBOX_IMAGE`` or
``gcop-sandbox:latest``.

The sandbox itself needs only ``python3`` on PATH with pytest importable, so any image with those
works (``DockerSandbox(image=...)``); ``gcop sandbox check --data-files F`` says which of a
dataset's imports it lacks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

DEFAULT_IMAGE = os.environ.get("GCOP_SANDBOX_IMAGE") or "gcop-sandbox:latest"
DEFAULT_SUITE = "bookworm"
IMAGE_DIR = Path(__file__).parent / "image"
RECIPE_LABEL = "org.gcop.sandbox.recipe"

#: Debian packages of the offline build: pytest plus the libraries KodCode's rows import.
PACKAGES = (
    "python3",
    "python3-pytest",
    "python3-numpy",
    "python3-pandas",
    "python3-scipy",
    "python3-sklearn",
    "python3-matplotlib",
    "python3-sympy",
    "python3-networkx",
)

log = logging.getLogger("gcop_env.sandbox")

# Metadata of the imported image (a tarball import has none of its own). MPLBACKEND: no display in
# a sandbox, so matplotlib must never try a GUI backend.
_IMPORT_CHANGES = [
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    "ENV MPLBACKEND=Agg",
    "USER 65534:65534",
    'CMD ["python3"]',
    "LABEL org.gcop.sandbox=1",
]
# Dropped from the root filesystem before import: not needed to run Python, and smaller is faster.
_PRUNE = [
    "var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/locale", "usr/share/info",
    "usr/include",  # C headers that the scientific packages drag in (boost...): nothing runs them
]


class ImageBuildError(RuntimeError):
    """The image could not be built; the message says which step failed and what to do."""


def recipe_hash(offline: bool = True, suite: str = DEFAULT_SUITE) -> str:
    """A short hash of what an image built now would contain (stored as the label ``RECIPE_LABEL``).

    Offline: the suite, the package list, the image metadata and the pruned paths; registry: the
    Dockerfile's text. Changing any of them changes the hash, so an old image is seen as outdated.
    """
    if offline:
        recipe = {"suite": suite, "packages": PACKAGES, "changes": _IMPORT_CHANGES, "prune": _PRUNE}
    else:
        recipe = {"dockerfile": (IMAGE_DIR / "Dockerfile").read_text(encoding="utf-8")}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def image_recipe(tag: str = DEFAULT_IMAGE, client=None) -> str | None:
    """The recipe hash the image ``tag`` was built from ("" for an unlabelled one); None when missing."""
    try:
        image = _client(client).images.get(tag)
    except Exception:
        return None
    return (image.labels or {}).get(RECIPE_LABEL, "")


def image_is_current(tag: str = DEFAULT_IMAGE, client=None, suite: str = DEFAULT_SUITE) -> bool:
    """True when ``tag`` exists and was built from this version's recipe (offline or registry)."""
    return image_recipe(tag, client) in (recipe_hash(True, suite), recipe_hash(False))


def _client(client=None):
    if client is not None:
        return client
    import docker

    return docker.from_env()


def build_image(
    tag: str = DEFAULT_IMAGE,
    offline: bool = True,
    suite: str = DEFAULT_SUITE,
    mirror: str | None = None,
    client=None,
    echo: Callable[[str], None] = print,
) -> str:
    """Build the sandbox image and tag it ``tag``. Returns the image id."""
    client = _client(client)
    started = time.monotonic()
    if offline:
        image_id = _build_offline(client, tag, suite, mirror, echo)
    else:
        echo(f"building {tag} from {IMAGE_DIR / 'Dockerfile'} (needs a registry)")
        image, _logs = client.images.build(
            path=str(IMAGE_DIR), tag=tag, rm=True, pull=True, labels={RECIPE_LABEL: recipe_hash(False)}
        )
        image_id = image.id
    echo(f"built {tag} ({image_id[:19]}) in {time.monotonic() - started:.0f}s")
    return image_id


def _build_offline(client, tag: str, suite: str, mirror: str | None, echo: Callable[[str], None]) -> str:
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise ImageBuildError(
            "debootstrap is not installed: `apt-get install debootstrap` (or run scripts/setup_docker.sh), "
            "or build from a registry with offline=False (`gcop sandbox build-image --registry`)"
        )
    if os.geteuid() != 0:
        raise ImageBuildError("the offline build runs debootstrap, which needs root; run it as root (or with sudo)")
    with tempfile.TemporaryDirectory(prefix="gcop-image-") as work:
        root = Path(work) / "rootfs"
        command = [debootstrap, "--variant=minbase", "--include=" + ",".join(PACKAGES), suite, str(root)]
        if mirror:
            command.append(mirror)
        echo("running " + " ".join(command))
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if done.returncode != 0:
            raise ImageBuildError(f"debootstrap failed (exit {done.returncode}):\n{done.stdout[-3000:]}")
        for relative in _PRUNE:
            target = root / relative
            if target.is_dir():
                for child in target.iterdir():
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child, ignore_errors=True)
                    else:
                        child.unlink(missing_ok=True)
        echo(f"importing the root filesystem as {tag}")
        tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        try:
            repository, _, version = tag.rpartition(":") if ":" in tag.split("/")[-1] else (tag, "", "latest")
            changes = [*_IMPORT_CHANGES, f"LABEL {RECIPE_LABEL}={recipe_hash(True, suite)}"]
            reply = client.api.import_image_from_stream(tar.stdout, repository=repository, tag=version, changes=changes)
        finally:
            tar.stdout.close()
            tar.wait()
        if tar.returncode != 0:
            raise ImageBuildError(f"tar of the root filesystem failed (exit {tar.returncode})")
        del reply
    return client.images.get(tag).id


@dataclass(frozen=True)
class ImageCheck:
    """The result of :func:`check_image`."""

    ok: bool
    message: str
    python: str | None = None
    pytest: str | None = None
    seconds: float = 0.0


def check_image(tag: str = DEFAULT_IMAGE, client=None) -> ImageCheck:
    """Start a sandbox on ``tag`` and grade a right and a wrong solution with it."""
    started = time.monotonic()
    try:
        client = _client(client)
        client.ping()
    except Exception as exc:
        return ImageCheck(False, f"no Docker engine answers ({exc}); start one (scripts/setup_docker.sh)")
    try:
        client.images.get(tag)
    except Exception:
        return ImageCheck(False, f"image {tag} is missing; build it with `gcop sandbox build-image`")
    if not image_is_current(tag, client):
        return ImageCheck(
            False,
            f"{tag} was built from another recipe (label {RECIPE_LABEL}={image_recipe(tag, client) or 'none'}, this "
            f"version's is {recipe_hash()}): it may lack packages the tasks import; rebuild it with "
            "scripts/setup_docker.sh (or `gcop sandbox build-image --if-outdated`)",
        )
    from gcop_env.sandbox.docker_backend import DockerSandbox

    tests = "from solution import *\n\ndef test_add():\n    assert add(2, 3) == 5\n"
    try:
        with DockerSandbox(image=tag, pool_size=1, client=client) as sandbox:
            good = sandbox.run_pytest({"solution.py": "def add(a, b):\n    return a + b\n", "test_solution.py": tests}, 10)
            bad = sandbox.run_pytest({"solution.py": "def add(a, b):\n    return a - b\n", "test_solution.py": tests}, 10)
            versions = sandbox.versions
    except Exception as exc:
        return ImageCheck(False, f"the sandbox failed on {tag}: {exc}")
    seconds = time.monotonic() - started
    for outcome in (good, bad):
        if outcome.infra_error:
            return ImageCheck(False, f"the sandbox failed on {tag}: {outcome.infra_error}", seconds=seconds)
    if not good.all_passed or bad.all_passed:
        return ImageCheck(
            False,
            f"wrong verdicts on {tag}: right solution passed={good.all_passed}, wrong solution passed={bad.all_passed}\n"
            + good.output[-2000:],
            seconds=seconds,
        )
    return ImageCheck(
        True,
        f"{tag} works: python {versions.get('python')}, pytest {versions.get('pytest')}",
        python=versions.get("python"),
        pytest=versions.get("pytest"),
        seconds=seconds,
    )
