"""The validator's feedback on a failed turn, as the guide reads it in a multi-turn episode.

Feedback tells the guide *that* and *how* the core failed, never what the right answer is:

========================  ==============================================================================
task                      feedback (reward: what R is computed on)
========================  ==============================================================================
GSM8K                     "the solver's final answer was N, which is wrong" (or: it gave no number).
                          Never the gold. (R: exact match, as in the single-turn env.)
KodCode, ≥ 2 test units   the first ``max(1, n // 3)`` test units of the row's pytest file are run on
                          the core's code and each one's outcome and failure message is shown.
                          (R: the *other* units only, whose content is never shown.)
KodCode, 1 test unit      status only: failed / timed out / crashed / did not import, with no test
                          content. (R: the whole file, as in the single-turn env.)
HumanEval with examples   the docstring's examples (already in the problem text) are run as tests and
                          shown. (R: HumanEval's ``check()``, unchanged.)
HumanEval, no example     status only. (R: ``check()``.)
any other task            the validator's ``turn_feedback(problem, output, result) -> str`` when it
                          defines one, else status only ("judged wrong", no details: a custom
                          validator's details may hold the gold).
========================  ==============================================================================

Two rules hold for every task: the leak check's and the judge's verdicts are never part of the
feedback (telling a guide "your strategy stated the answer" would confirm a guessed answer),
and the feedback text is bounded (``max_chars``). Splitting a file and the examples of a
docstring: :mod:`gcop_env.validators.feedback_tests`.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field
from typing import Any

from gcop_env.problem import Problem
from gcop_env.step.strategy import ParsedGuideOutput
from gcop_env.validators.base import Status, ValidationResult, Validator
from gcop_env.validators.code import CodeValidator
from gcop_env.validators.feedback_tests import (
    humaneval_examples,
    humaneval_feedback_file,
    split_pytest_file,
)
from gcop_env.validators.gsm8k import GSM8KValidator
from gcop_env.validators.humaneval import HumanEvalValidator
from gcop_env.validators.kodcode import KodCodeValidator

DEFAULT_MAX_FEEDBACK_CHARS = 1500
_TEST_MESSAGE_CHARS = 400  # of one feedback test's failure message

# How a task's feedback and reward are separated (TurnProblem.split).
SPLIT_EXACT = "exact"  # math: the feedback is right/wrong, the reward is exact match
SPLIT_TESTS = "split"  # a pytest file cut into feedback tests and reward tests
SPLIT_EXAMPLES = "examples"  # the problem's own examples as feedback tests; the reward tests unchanged
SPLIT_STATUS = "status"  # nothing to show: feedback says only how the run ended


class FeedbackUnavailable(Exception):
    """The feedback tests could not be run (the sandbox failed): an infrastructure error, never a verdict."""


@dataclass(frozen=True)
class TurnProblem:
    """A problem as a multi-turn episode scores it.

    ``reward``: the problem whose reference R is computed on (for a split KodCode file, its reward
    tests only). ``feedback_tests``: the pytest file the feedback runs (None: no tests are shown).
    """

    original: Problem
    reward: Problem
    split: str
    feedback_tests: str | None = None
    feedback_units: tuple[str, ...] = ()
    reward_units: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        """For ``info["feedback_split"]``: the kind of split and how many test units are on each side."""
        return {"kind": self.split, "feedback_tests": len(self.feedback_units), "reward_tests": len(self.reward_units)}


@dataclass(frozen=True)
class Feedback:
    """What the guide is told about a failed turn (``text``), and a summary for ``info``."""

    text: str
    kind: str  # "answer", "tests", "status", "structure" or "custom"
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"text": self.text, "kind": self.kind, **self.details}


def _bounded(text: str, limit: int) -> str:
    text = text.strip()
    if len(text) <= limit:
        return text
    keep = max(0, limit - 40)
    return text[:keep // 2] + f"\n[… {len(text) - keep} characters omitted …]\n" + text[-(keep - keep // 2):]


def structure_feedback(parsed: ParsedGuideOutput) -> Feedback:
    """The feedback on a malformed guide reply (no core call was made)."""
    why = parsed.message or (parsed.error.value if parsed.error else "malformed")
    return Feedback(f"Your previous reply was not one well-formed strategy ({why}), so the solver was not called. "
                    "Reply with one <think>…</think> block followed by exactly one non-empty <strategy>…</strategy> "
                    "block.", "structure", {"structure_error": parsed.error.value if parsed.error else None})


class FeedbackSource:
    """Prepares problems (the reward/feedback split) and writes the feedback on a failed turn.

    The default writes status-only feedback; :func:`feedback_source_for` picks the task's own.
    Thread-safe: prepared problems are cached per ``task_id``.
    """

    def __init__(self, validator: Validator, max_chars: int = DEFAULT_MAX_FEEDBACK_CHARS):
        self.validator = validator
        self.max_chars = max_chars
        self._prepared: dict[tuple[str, int], TurnProblem] = {}
        self._lock = threading.Lock()

    def prepare(self, problem: Problem) -> TurnProblem:
        key = (problem.task_id, hash(str(problem.reference)))
        with self._lock:
            if key not in self._prepared:
                self._prepared[key] = self._prepare(problem)
            return self._prepared[key]

    def _prepare(self, problem: Problem) -> TurnProblem:
        return TurnProblem(problem, problem, SPLIT_STATUS)

    def feedback(self, prepared: TurnProblem, output: str, result: ValidationResult) -> Feedback:
        """The feedback on a core answer that did not pass; raises :class:`FeedbackUnavailable`."""
        return Feedback(self._status_text(result), "status", {"status": result.status.value})

    def _status_text(self, result: ValidationResult) -> str:
        if result.status is Status.TIMEOUT:
            return "The solver's answer ran out of time."
        if result.status is Status.TAMPERED:
            return "The solver's answer tried to game the checker and scored 0."
        if result.status is Status.ERROR:
            return "The solver's answer could not be checked (it was missing or malformed)."
        return "The solver's answer was judged wrong."

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


class GSM8KFeedback(FeedbackSource):
    """"The solver's final answer was N, which is wrong" — the core's own number, never the gold."""

    def _prepare(self, problem: Problem) -> TurnProblem:
        return TurnProblem(problem, problem, SPLIT_EXACT)

    def feedback(self, prepared, output, result):
        extracted = result.details.get("extracted")
        if result.status is Status.ERROR or extracted is None:
            text = ("The solver's reply contained no final number. The solver must finish with its final numerical "
                    "answer in \\boxed{}.")
        else:
            text = f"The solver's final answer was {extracted}, which is wrong."
        return Feedback(_bounded(text, self.max_chars), "answer", {"status": result.status.value})


class CustomFeedback(FeedbackSource):
    """A validator's own ``turn_feedback(problem, output, result) -> str`` (bounded)."""

    def feedback(self, prepared, output, result):
        text = self.validator.turn_feedback(prepared.original, output, result)  # type: ignore[attr-defined]
        return Feedback(_bounded(str(text), self.max_chars), "custom", {"status": result.status.value})


class CodeFeedback(FeedbackSource):
    """Code tasks: run the feedback tests on the core's code and show their outcomes; else the status.

    Subclasses say how a problem is split (:meth:`_prepare`). The feedback tests run in the
    validator's own sandbox, in a run of their own: the reward tests are never in it.
    """

    validator: CodeValidator

    def feedback(self, prepared, output, result):
        reason = result.details.get("reason")
        status = result.status.value
        if result.status is Status.TAMPERED:
            return Feedback("The solver's code tried to tamper with the test harness, so it scored 0.", "status",
                            {"status": status})
        if reason == "no_code":
            return Feedback("The solver's reply contained no code block.", "status", {"status": status})
        if reason == "syntax":  # compiled on the host from solution.py alone: no test content
            return Feedback(_bounded(f"The solver's code does not compile: {result.details.get('error')}",
                                     self.max_chars), "status", {"status": status})
        if reason == "missing_module":
            return Feedback(f"The solver's code imports {result.details.get('missing_module')}, which is not "
                            "installed where it runs.", "status", {"status": status})
        if prepared.feedback_tests is None:
            return Feedback(self._code_status(result), "status", {"status": status})
        return self._run_feedback_tests(prepared, output, result)

    def _code_status(self, result: ValidationResult) -> str:
        reason = result.details.get("reason")
        return {
            "timeout": "The solver's code ran out of time on the hidden tests (an endless loop, or an algorithm "
                       "too slow for the inputs).",
            "crashed": "The solver's code crashed the test run (it exits or kills its process).",
            "import": "The solver's code failed when the tests imported it (an error at module level, or a name the "
                      "tests use is missing).",
            "no_tests": "No test ran on the solver's code.",
        }.get(reason, "The solver's code failed the hidden tests.")

    def _run_feedback_tests(self, prepared: TurnProblem, output: str, result: ValidationResult) -> Feedback:
        validator = self.validator
        extracted = validator.extract(prepared.reward, output)
        files = dict(validator.program_files(prepared.reward, extracted, output))
        files["test_solution.py"] = prepared.feedback_tests  # only the feedback tests: the reward file is not there
        outcome = validator.run_tests(files)
        if outcome.infra_error is not None:
            raise FeedbackUnavailable(f"the feedback tests could not run: {outcome.infra_error}")
        if outcome.monitor or outcome.tampered:  # a trick caught in the feedback run: its report is not trusted
            return Feedback("The solver's code tried to tamper with the test harness.", "status",
                            {"status": result.status.value, "feedback_tampered": True})
        tests = list(outcome.tests)
        passed = [t for t in tests if t.outcome == "passed"]
        lines = [self._code_status(result)]
        if outcome.timed_out:
            lines.append("The example tests shown to you also ran out of time.")
        elif not tests and outcome.collect_errors:
            lines.append("The example tests could not even import the code:")
            lines.append(_bounded(outcome.collect_errors[0], _TEST_MESSAGE_CHARS))
        elif tests and len(passed) == len(tests):
            lines.append(f"It passes all {len(tests)} example test(s) shown to you, so it fails on cases they do not "
                         "cover (edge cases, unusual or large inputs).")
        elif tests:
            lines.append(f"On the {len(tests)} example test(s) shown to you, {len(passed)} passed and "
                         f"{len(tests) - len(passed)} did not:")
            for t in tests:
                name = t.nodeid.split("::")[-1]
                if t.outcome == "passed":
                    lines.append(f"- {name}: passed")
                else:
                    lines.append(f"- {name}: {t.outcome}: {_bounded(t.message, _TEST_MESSAGE_CHARS)}")
        return Feedback(_bounded("\n".join(lines), self.max_chars), "tests",
                        {"status": result.status.value, "feedback_tests": len(tests),
                         "feedback_passed": len(passed), "feedback_timed_out": outcome.timed_out})


class KodCodeFeedback(CodeFeedback):
    """KodCode: the first ``max(1, n // 3)`` of the file's n ≥ 2 test units are feedback, the rest reward."""

    def _prepare(self, problem: Problem) -> TurnProblem:
        try:
            split = split_pytest_file(str(problem.reference))
        except (SyntaxError, ValueError):
            split = None
        if split is None:
            return TurnProblem(problem, problem, SPLIT_STATUS)
        reward = dataclasses.replace(problem, reference=split.reward_source)
        return TurnProblem(problem, reward, SPLIT_TESTS, split.feedback_source, split.feedback_units,
                           split.reward_units)


class HumanEvalFeedback(CodeFeedback):
    """HumanEval: the docstring's examples are the feedback tests; the reward is ``check()`` unchanged.

    A few docstrings hold an example their own reference solution does not satisfy (HumanEval/47's
    median, the recurrence lines of HumanEval/130, HumanEval/148's ``("Venus")``). Before the
    first feedback on a problem, the examples are *vetted*: the reference solution runs them once
    in the sandbox and only those it passes are kept (none kept: status-only feedback). The
    reference solution's run shows nothing to anyone; only which examples passed is used.
    """

    def __init__(self, validator, max_chars=DEFAULT_MAX_FEEDBACK_CHARS):
        super().__init__(validator, max_chars)
        self._vetted: dict[str, TurnProblem] = {}

    def _prepare(self, problem: Problem) -> TurnProblem:
        examples = humaneval_examples(problem.metadata.get("prompt", problem.question),
                                      str(problem.metadata.get("entry_point")))
        return self._with_examples(problem, examples)

    @staticmethod
    def _with_examples(problem: Problem, examples: list) -> TurnProblem:
        if not examples:
            return TurnProblem(problem, problem, SPLIT_STATUS)
        units = tuple(f"test_example_{i}" for i in range(1, len(examples) + 1))
        return TurnProblem(problem, problem, SPLIT_EXAMPLES, humaneval_feedback_file(examples), units, ("check",))

    def vet(self, prepared: TurnProblem) -> TurnProblem:
        """``prepared`` with only the examples its reference solution passes (cached per problem)."""
        problem = prepared.original
        with self._lock:
            if problem.task_id in self._vetted:
                return self._vetted[problem.task_id]
        reference = problem.solution  # prompt + canonical body: the original harness's program
        if prepared.feedback_tests is None or not reference:
            return prepared
        examples = humaneval_examples(problem.metadata.get("prompt", problem.question),
                                      str(problem.metadata.get("entry_point")))
        outcome = self.validator.run_tests({"solution.py": reference, "test_solution.py": prepared.feedback_tests})
        if outcome.infra_error is not None:
            raise FeedbackUnavailable(f"the examples could not be checked against the reference: {outcome.infra_error}")
        passed = {t.nodeid.split("::")[-1] for t in outcome.tests if t.outcome == "passed"}
        kept = [e for i, e in enumerate(examples, start=1) if f"test_example_{i}" in passed]
        vetted = self._with_examples(problem, kept)
        with self._lock:
            self._vetted[problem.task_id] = vetted
        return vetted

    def _run_feedback_tests(self, prepared, output, result):
        prepared = self.vet(prepared)
        if prepared.feedback_tests is None:  # no example survived the vetting
            return Feedback(self._code_status(result), "status", {"status": result.status.value})
        return super()._run_feedback_tests(prepared, output, result)


def feedback_source_for(validator: Validator, max_chars: int = DEFAULT_MAX_FEEDBACK_CHARS) -> FeedbackSource:
    """The task's feedback (see the module doc): its validator's ``turn_feedback`` first, then by validator class."""
    if callable(getattr(validator, "turn_feedback", None)):
        return CustomFeedback(validator, max_chars)
    for cls, source in ((GSM8KValidator, GSM8KFeedback), (KodCodeValidator, KodCodeFeedback),
                        (HumanEvalValidator, HumanEvalFeedback)):
        if isinstance(validator, cls):
            return source(validator, max_chars)
    if isinstance(validator, CodeValidator):
        return CodeFeedback(validator, max_chars)
    return FeedbackSource(validator, max_chars)
