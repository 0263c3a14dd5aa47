"""Shared test fixtures: an isolated cache, offline data, fake LLM servers (real SDKs over loopback
HTTP), priced fake models, the tiny guide, the sandbox. Helpers that are not fixtures live in
``support.py`` (and ``fake_llm.py``, ``tiny_guide.py``, ``_sandbox_support.py``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS_DIR))  # the support modules, from every tests/<package>/ folder

from _sandbox_support import sandbox  # noqa: E402,F401 - the sandbox fixture (both backends), for every test
from fake_llm import FakeLLMServer  # noqa: E402
# The helpers, also importable from here for tests written before support.py.
from support import (GOOD, GOOD_GUIDE, GSM8K_DIR, KODCODE_SAMPLE, REPO_ROOT, SHARED_DATA,  # noqa: E402,F401
                     CurationWorld, ScriptedSolver, gsm8k_golds, strip_ws)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own response cache directory, no real API keys, and no hub."""
    monkeypatch.setenv("GCOP_CACHE_DIR", str(tmp_path / "gcop-cache"))
    for var in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no test asks the hub anything (the examples' default guide checks it)
    yield


@pytest.fixture
def gsm8k_dir() -> Path:
    if not (GSM8K_DIR / "test.jsonl").exists():
        pytest.fail(f"offline GSM8K copy not found at {GSM8K_DIR}")
    return GSM8K_DIR


@pytest.fixture
def fake_llm():
    """A factory of started fake LLM servers: ``server = fake_llm(responder)``; all stop after the test."""
    started: list[FakeLLMServer] = []

    def start(responder=None) -> FakeLLMServer:
        server = FakeLLMServer(responder).__enter__()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.__exit__(None, None, None)


@pytest.fixture
def priced_models(monkeypatch):
    """``priced_models({"fake-core": (0.8, 4.0)})``: USD per million input/output tokens for fake
    models, through ``GCOP_PRICES`` (the way a user prices a model the table does not know)."""

    def price(table: dict[str, tuple[float, float]]) -> None:
        monkeypatch.setenv("GCOP_PRICES", json.dumps({model: list(p) for model, p in table.items()}))

    return price


@pytest.fixture
def solver_server(fake_llm):
    """A started fake server whose responder is a ScriptedSolver over the first 20 test problems."""
    solver = ScriptedSolver(gsm8k_golds())
    server = fake_llm(solver)
    server.solver = solver
    return server


@pytest.fixture
def curation_world(fake_llm, priced_models):
    """A priced fake teacher and core for ``gcop curate`` (:class:`support.CurationWorld`)."""
    priced_models({"fake-teacher": (3.0, 15.0), "fake-core": (0.8, 4.0)})
    world = CurationWorld()
    world.server = fake_llm(world)
    yield world
    world.release.set()


@pytest.fixture(scope="session")
def tiny_gsm8k_guide(tmp_path_factory) -> Path:
    """The tiny guide (a 2-layer Qwen2, tokenizer trained in-test) over the first four GSM8K test
    questions. Shared by the session: tests read it and write their outputs elsewhere."""
    from tiny_guide import build_tiny_guide

    return build_tiny_guide(tmp_path_factory.mktemp("guide") / "tiny", list(gsm8k_golds(4)), [GOOD_GUIDE] * 3)
