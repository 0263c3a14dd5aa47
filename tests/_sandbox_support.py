"""Shared by the sandbox and code-validator tests: data paths, the Docker requirement, fixtures.

Docker tests are marked ``docker``. They skip when no engine (or no image) is available, unless
``GCOP_REQUIRE_DOCKER=1`` (CI sets it): then they fail, so CI cannot silently skip them.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
from support import SHARED_DATA

from gcop_env.sandbox.docker_backend import DockerSandbox, docker_available
from gcop_env.sandbox.process_backend import ProcessSandbox

GOOD = "def answer():\n    return 42\n"
TESTS = "from solution import *\n\n\ndef test_answer():\n    assert answer() == 42\n\n\ndef test_type():\n    assert isinstance(answer(), int)\n"


def shared_data(*parts: str) -> Path:
    """A file under the shared offline data (located by ``conftest.SHARED_DATA``)."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data {'/'.join(parts)} not found under {SHARED_DATA} (set GCOP_SHARED_DATA)")
    return path


def require_docker() -> None:
    ok, why = docker_available()
    if ok:
        return
    if os.environ.get("GCOP_REQUIRE_DOCKER"):
        pytest.fail(f"GCOP_REQUIRE_DOCKER is set but Docker is unusable: {why}")
    pytest.skip(why)


def make_backend(kind: str, **options) -> DockerSandbox | ProcessSandbox:
    if kind == "docker":
        require_docker()
        return DockerSandbox(**options)
    return ProcessSandbox(**options)


BACKENDS = [pytest.param("process"), pytest.param("docker", marks=pytest.mark.docker)]


@pytest.fixture(scope="module", params=BACKENDS)
def sandbox(request):
    """One warm single-member sandbox per backend (single: a run after a hostile one is on the same pool)."""
    box = make_backend(request.param, pool_size=1)
    yield box
    box.close()


@contextlib.contextmanager
def use_runner(box, runner: str):
    """Run ``box``'s validations with ``runner`` ("auto": the plain runner where it can; "pytest") for a while."""
    before, box.runner = box.runner, runner
    try:
        yield box
    finally:
        box.runner = before


@pytest.fixture(params=["auto", "pytest"])
def runner(request, sandbox):
    """Each test that asks for it runs under both runners (on the shared ``sandbox``)."""
    with use_runner(sandbox, request.param):
        yield request.param


@contextlib.contextmanager
def use_mode(box, mode: str):
    """Run ``box``'s validations in ``mode`` for a while: "trusted/plain", "trusted/pytest",
    "in-process/plain" or "in-process/pytest" (isolation, then runner)."""
    isolation, runner = mode.split("/")
    before = box.isolation, box.runner
    box.isolation, box.runner = ("auto" if isolation == "trusted" else "in-process"), ("auto" if runner == "plain" else "pytest")
    try:
        yield box
    finally:
        box.isolation, box.runner = before


MODES = ["trusted/plain", "trusted/pytest", "in-process/plain", "in-process/pytest"]


@pytest.fixture(params=MODES)
def mode(request, sandbox):
    """Each test that asks for it runs in both isolations under both runners (on the shared ``sandbox``)."""
    with use_mode(sandbox, request.param):
        yield request.param


def check_mode(outcome, mode: str) -> None:
    """The outcome ran in ``mode`` (a test file the plain runner hands over still runs in its isolation)."""
    isolation, runner = mode.split("/")
    assert outcome.isolation == isolation, (outcome.isolation, outcome.isolation_note)
    if runner == "pytest":
        assert outcome.runner == "pytest", outcome.runner


def run_good(box) -> None:
    """A known-good run must pass: the sandbox is usable and clean after whatever ran before."""
    outcome = box.run_pytest({"solution.py": GOOD, "test_solution.py": TESTS}, timeout=10)
    assert outcome.all_passed, outcome


def _break(solution: str) -> str:
    import ast

    tree = ast.parse(solution)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name != "__init__":
            node.body = [ast.Return(ast.Constant(None))]
    return ast.unparse(tree)


# A solution that needs the image's scientific packages (numpy, scipy).
SCIENTIFIC_SOLUTION = """
import numpy as np
from scipy import stats


def standardize(values):
    \"\"\"z-scores of the values (population standard deviation).\"\"\"
    return stats.zscore(np.asarray(values, dtype=float))
"""
