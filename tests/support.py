"""Helpers the tests share (not fixtures: those are in conftest.py): where the offline data is,
scripted fake cores and teachers, well-formed guide outputs."""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent


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


class InFlightCounter:
    """A responder that counts the requests inside it around ``respond``: ``requests`` in all,
    ``in_flight`` now, ``max_in_flight`` at most at once.

    Each request, once counted, waits up to ``hold_s`` for ``until(counter)`` to hold (so requests that
    are really concurrent are all inside together; requests made one at a time are not); with no
    ``until`` it waits the whole ``hold_s`` (a core with that latency).
    """

    def __init__(self, respond, hold_s: float, until=None):
        self.respond, self.hold_s, self.until = respond, hold_s, until
        self.in_flight = self.max_in_flight = self.requests = 0
        self._cond = threading.Condition()

    def __call__(self, prompt: str) -> str:
        with self._cond:
            self.in_flight += 1
            self.requests += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self._cond.notify_all()
            self._cond.wait_for(lambda: self.until is not None and self.until(self), timeout=self.hold_s)
        try:
            return self.respond(prompt)
        finally:
            with self._cond:
                self.in_flight -= 1


class HoldFirst:
    """Calls ``call``, but holds the first call that ``is_held(*args)`` picks until ``needed`` other
    calls have returned (or ``safety_s`` has passed), and tracks how many calls are inside at once
    (``most_in_flight``).

    A loop that waits for a whole batch could never finish ``needed`` others while the held call is
    out: ``released_by_others`` is then False (the hold ends at the safety timeout)."""

    def __init__(self, call, is_held, needed: int, safety_s: float = 60.0):
        self.call, self.is_held, self.needed, self.safety_s = call, is_held, needed, safety_s
        self.lock, self.release = threading.Lock(), threading.Event()
        self.holding = self.released_by_others = False
        self.others_done = self.in_flight = self.most_in_flight = 0

    def __call__(self, *args):
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            hold = not self.holding and self.is_held(*args)
            self.holding = self.holding or hold
        try:
            if hold and not self.release.wait(self.safety_s):
                self.release.set()  # released by time, not by the others
            result = self.call(*args)
            if not hold:
                with self.lock:
                    self.others_done += 1
                    if self.others_done >= self.needed and not self.release.is_set():
                        self.released_by_others = True
                        self.release.set()
            return result
        finally:
            with self.lock:
                self.in_flight -= 1


def gsm8k_golds(n: int = 20) -> dict[str, str]:
    from gcop_env.validators.gsm8k import load_gsm8k

    return {p.question: p.reference for p in load_gsm8k("test", data_files=str(GSM8K_DIR))[:n]}


GOOD_GUIDE = ("<think>Find the quantities and combine them.</think>\n"
              "<strategy>1. List every quantity. 2. Decide which operations link them. "
              "3. Compute step by step and check units.</strategy>")


def write_curated(path: Path, questions, guide_output: str = GOOD_GUIDE) -> Path:
    """A curated corpus as ``gcop curate`` writes it: every one of ``questions`` accepted with ``guide_output``."""
    path.write_text("".join(json.dumps({"problem_id": f"p{i}", "question": q, "accepted": True,
                                        "guide_output": guide_output, "q_hat": 1.0}) + "\n"
                            for i, q in enumerate(questions)))
    return path


def strip_ws(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()

# A second well-formed guide output (curation's teacher writes it).
GOOD = "<think>Track each quantity.</think><strategy>List every quantity, then combine them step by step.</strategy>"


# -- curation: a teacher and a core behind one fake server ---------------------------------------

K, TAU, ROUNDS = 4, 0.75, 2  # gcop curate's K, τ and refinement rounds in the curation tests


class CurationWorld:
    """Teacher and core behind one fake server. Problem roles by index in the first six:

    0, 1 good at once; 2 good after one refinement; 3 hopeless (always HARMFUL);
    4 malformed first, then good; 5 PARTIAL (the core succeeds every other time: q̂ = 0.5 < τ).
    """

    def __init__(self, n: int = 6):
        golds = gsm8k_golds(20)
        self.questions = list(golds)[:n]
        self.solver = ScriptedSolver(golds)
        self.lock = threading.Lock()
        self.partial_calls = 0
        self.answered_teacher: list[str] = []
        self.hold_question: str | None = None  # core calls for this question block until released
        self.held = threading.Event()
        self.release = threading.Event()
        self.down_question: str | None = None  # core calls for this question fail (connection dropped)
        self.flaky_core = False  # guided core calls alternate right / wrong (a sampling core)
        self.core_calls = 0

    def role(self, prompt: str) -> int:
        return next(i for i, q in enumerate(self.questions) if q in prompt)

    def __call__(self, prompt: str) -> str:
        if prompt.startswith("You write strategies"):
            i, refine = self.role(prompt), "Your previous strategy:" in prompt
            reply = GOOD
            if i == 2 and not refine or i == 3:
                reply = "<strategy>HARMFUL: guess quickly.</strategy>"
            elif i == 4 and not refine:
                reply = "Here is my plan without tags."
            elif i == 5:
                reply = "<strategy>PARTIAL: estimate, then compute.</strategy>"
            with self.lock:
                self.answered_teacher.append(prompt)
            return reply
        question = self.questions[self.role(prompt)]
        if question == self.down_question:
            raise ConnectionError("core is down")
        if question == self.hold_question:
            self.held.set()
            self.release.wait(60)
        if self.flaky_core and "Suggested strategy:" in prompt:
            with self.lock:
                self.core_calls += 1
                right = self.core_calls % 2 == 0
            gold = self.solver._gold(prompt)
            return f"\\boxed{{{gold if right else int(float(gold)) + 3}}}"
        if "PARTIAL" in prompt:
            with self.lock:
                self.partial_calls += 1
                right = self.partial_calls % 2 == 0
            gold = self.solver._gold(prompt)
            answer = gold if right else str(int(float(gold)) + 7)
            return f"\\boxed{{{answer}}}"
        return self.solver(prompt)


def curate_argv(server, out, workers=3, limit=6, draws=1):
    # one teacher draw per problem unless a test is about Â_s: the call counts below follow it
    return ["--teacher-draws", str(draws), "--task", "GSM8K", "--data-files", str(GSM8K_DIR), "--split", "test", "--limit", str(limit),
            "--teacher", f"openai:fake-teacher@{server.openai_base_url}",
            "--core", f"openai:fake-core@{server.openai_base_url}",
            "--k", str(K), "--tau", str(TAU), "--max-rounds", str(ROUNDS), "--out", str(out),
            "--workers", str(workers), "--max-retries", "2", "--retry-backoff-s", "0.01", "--timeout-s", "10",
            "--no-preflight"]  # the scripted world answers only curation prompts; test_check covers preflight


# -- code tasks ------------------------------------------------------------------------------------

def solver_for(problems, broken_ids=()):
    """Guided: the reference solution (broken for ``broken_ids``); unguided: always broken."""
    by_question = {p.question: p for p in problems}

    def respond(prompt: str) -> str:
        if prompt.startswith("You review a strategy"):
            return '{"usefulness": 6, "specificity": 4, "leaks_answer": false}'
        problem = next(p for q, p in by_question.items() if q in prompt)
        guided = "Suggested strategy:" in prompt
        code = problem.solution if guided and problem.task_id not in broken_ids else "def nothing():\n    pass\n"
        return f"Here is the implementation:\n```python\n{code}\n```\nExample:\n```python\nprint('usage')\n```"
    return respond


# -- text that is not valid Unicode: a guide output with lone surrogates ---------------------------

SURROGATE_OUTPUTS = [
    "<strategy>Add \ud800 them</strategy>",
    "<think>\udfff</think><strategy>Add them</strategy>",
    "\ud83d<strategy>Add them</strategy>",
    "\udc80" * 10,
]


def import_adapter_library(module: str, extra: str):
    """``pytest.importorskip(module)``, except where the test command set up the library's own venv
    and says so (``GCOP_REQUIRE_ADAPTERS`` names the extra): there a missing library fails."""
    import pytest

    required = extra in os.environ.get("GCOP_REQUIRE_ADAPTERS", "").replace(",", " ").split()
    try:
        return __import__(module)
    except ImportError as exc:
        if required:
            pytest.fail(f"{module} is not importable in this venv ({exc}) though GCOP_REQUIRE_ADAPTERS names {extra}",
                        pytrace=False)
        pytest.skip(f"{module} is not installed here: `bash scripts/test.sh` runs these tests in the "
                    f"{extra} venv (.venv-{extra}, `pip install 'gcop-env[{extra}]'`)", allow_module_level=True)


# -- multi-turn episodes (issue 20) ---------------------------------------------------------------
MT_FIRST = "<think>Plan.</think><strategy>List every quantity and add them up.</strategy>"


class FeedbackSolver:
    """A fake core for GSM8K: it answers gold + 1 unless the strategy says to avoid that very number,
    which a guide can only know from the feedback ("the solver's final answer was N, which is wrong")."""

    def __init__(self):
        self.golds = gsm8k_golds(20)

    def wrong(self, prompt: str) -> str:
        gold = next(g for q, g in self.golds.items() if q in prompt)
        return str(int(float(gold)) + 1)

    def __call__(self, prompt: str) -> str:
        if prompt.startswith("You review a strategy"):
            return '{"usefulness": 8, "specificity": 6, "leaks_answer": false}'
        gold = next(g for q, g in self.golds.items() if q in prompt)
        wrong = str(int(float(gold)) + 1)
        strategy = prompt.split("Suggested strategy:", 1)[1] if "Suggested strategy:" in prompt else ""
        answer = gold if f"avoid {wrong}" in strategy else wrong
        return f"Working through it, the total is {answer}.\n\\boxed{{{answer}}}"


def reviser(observation: str) -> str:
    """The scripted guide's second turn: it reads the wrong number from the feedback."""
    wrong = re.search(r"The solver's final answer was (\S+), which is wrong\.", observation).group(1)
    return f"<think>It said {wrong}.</think><strategy>Recompute every step and avoid {wrong}, it was wrong.</strategy>"


