"""Shared test fixtures: offline data, fake LLM servers, an isolated cache directory."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
sys.path.insert(0, str(TESTS_DIR))

from fake_llm import FakeLLMServer  # noqa: E402


def _find_shared_data() -> Path:
    """``$GCOP_SHARED_DATA``, else ``shared/data`` beside or above the repo (CI lays it beside)."""
    if os.environ.get("GCOP_SHARED_DATA"):
        return Path(os.environ["GCOP_SHARED_DATA"])
    for base in (REPO_ROOT, *REPO_ROOT.parents):
        candidate = base / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return REPO_ROOT.parent / "shared" / "data"


SHARED_DATA = _find_shared_data()
GSM8K_DIR = SHARED_DATA / "gsm8k"
KODCODE_SAMPLE = SHARED_DATA / "kodcode" / "kodcode_prefill_sample.jsonl"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own response cache directory, and no real API keys."""
    monkeypatch.setenv("GCOP_CACHE_DIR", str(tmp_path / "gcop-cache"))
    for var in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    yield


@pytest.fixture
def gsm8k_dir() -> Path:
    if not (GSM8K_DIR / "test.jsonl").exists():
        pytest.fail(f"offline GSM8K copy not found at {GSM8K_DIR}")
    return GSM8K_DIR


class ScriptedSolver:
    """A fake core for GSM8K that knows the gold answers.

    Guided (the prompt has a strategy): right, unless the strategy contains ``HARMFUL``.
    Unguided: right only when ``unguided_correct``. Judge prompts get a JSON rating;
    a strategy containing ``LEAKY`` is flagged as leaking by the fake judge.
    """

    def __init__(self, golds: dict[str, str], unguided_correct: bool = False, judge_reply: str | None = None):
        self.golds = golds
        self.unguided_correct = unguided_correct
        self.judge_reply = judge_reply

    def _gold(self, prompt: str) -> str:
        for question, gold in self.golds.items():
            if question in prompt:
                return gold
        raise AssertionError("the prompt holds no known question")

    def __call__(self, prompt: str) -> str:
        if prompt.startswith("You review a strategy"):
            if self.judge_reply is not None:
                return self.judge_reply
            leaks = "LEAKY" in prompt
            return f'Here is my rating: {{"usefulness": 8, "specificity": 6, "leaks_answer": {str(leaks).lower()}}}'
        gold = self._gold(prompt)
        if "Suggested strategy:" in prompt:
            strategy = prompt.split("Suggested strategy:", 1)[1]
            right = "HARMFUL" not in strategy
        else:
            right = self.unguided_correct
        answer = gold if right else str(int(float(gold)) + 1)
        return f"Let me work through it step by step. So the total is {answer}.\n\\boxed{{{answer}}}"


def gsm8k_golds(n: int = 20) -> dict[str, str]:
    from gcop_env.validators.gsm8k import load_gsm8k

    return {p.question: p.reference for p in load_gsm8k("test", data_files=str(GSM8K_DIR))[:n]}


@pytest.fixture
def solver_server():
    """A started fake server whose responder is a ScriptedSolver over the first 20 test problems."""
    solver = ScriptedSolver(gsm8k_golds())
    with FakeLLMServer(solver) as server:
        server.solver = solver
        yield server


GOOD_GUIDE = ("<think>Find the quantities and combine them.</think>\n"
              "<strategy>1. List every quantity. 2. Decide which operations link them. "
              "3. Compute step by step and check units.</strategy>")


def strip_ws(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()
