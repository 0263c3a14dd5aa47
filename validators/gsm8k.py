r"""GSM8K: exact-match scoring of the core's final number, and the dataset loader.

The reply's answer is read by :func:`gcop_env.validators.math_answer.extract_answer`: the last
answer it *states* (``\boxed{…}``, ``#### N``, "the answer is …", "Answer:", a later explicit
correction, an answer given first), not merely its last number; number words count; an answer
offering two different numbers ("either 39 or 44") is ambiguous and scores 0. Numbers are exact
rationals (:class:`fractions.Fraction`), compared exactly.

Gold is the number after ``####`` in the dataset's answer, read the same way and stored as a
canonical string (``18``, ``-0.75``, ``1/3``) that :func:`reference_value` reads back exactly.
"""

from __future__ import annotations

from fractions import Fraction

from gcop_env.problem import Problem
from gcop_env.validators.base import Status, ValidationResult, Validator
from gcop_env.validators.data import DataError, load_rows
from gcop_env.validators.math_answer import (_last_boxed, extract_answer, format_number,  # noqa: F401 (re-exported)
                                             normalize_number)
from gcop_env.validators.math_leak import LeakFinding, find_numeric_leak

HUB_ID = "openai/gsm8k"
HUB_CONFIG = "main"

def reference_value(reference: object) -> Fraction:
    """A stored gold (``"18"``, ``"-0.75"``, ``"1/3"``, ``"1e5"``) as an exact rational."""
    return Fraction(str(reference).strip())


def gold_from_answer(answer: str) -> str:
    """The gold number of a GSM8K ``answer`` field (the text after ``####``), canonically written."""
    if "####" not in answer:
        raise ValueError("answer has no '#### N' line")
    tail = answer.rsplit("####", 1)[1]
    value = normalize_number(tail)
    if value is None:
        raise ValueError(f"no number after '####': {tail[:40]!r}")
    return format_number(value)


class GSM8KValidator(Validator):
    """R = 1 when the core's final number equals the gold number, else 0."""

    answer_format = "math"

    def validate(self, problem: Problem, output: str) -> ValidationResult:
        gold = reference_value(problem.reference)
        value, source = extract_answer(output or "")
        if value is None:
            reason = ("the reply offers two different numbers as its answer" if source == "ambiguous"
                      else "no number in the reply")
            return ValidationResult(0.0, Status.ERROR, {"reason": reason, "source": source, "gold": format_number(gold)})
        ok = value == gold  # exact: rationals, no float rounding
        return ValidationResult(1.0 if ok else 0.0, Status.PASS if ok else Status.FAIL,
                                {"extracted": format_number(value), "source": source, "gold": format_number(gold)})

    def leaks(self, problem: Problem, strategy: str) -> bool:
        """The strategy states the gold answer (rules in :mod:`gcop_env.validators.math_leak`):
        the gold as a stated answer or last computed result, or as a number that is neither a
        step index nor one the question already gives."""
        return self.leak_finding(problem, strategy) is not None

    def leak_finding(self, problem: Problem, strategy: str) -> LeakFinding | None:
        """Which number leaks the gold and by which rule; None when the strategy does not leak."""
        # the gold read back exactly as a rational (a canonical "1/3" is no Decimal)
        return find_numeric_leak(problem.question, strategy, reference_value(problem.reference), normalize_number)


def load_gsm8k(split: str = "test", data_files=None) -> list[Problem]:
    """GSM8K problems from the hub (``openai/gsm8k``, config ``main``) or local JSONL files.

    ``data_files``: a file, a list of files, a ``{split: file}`` dict, or a directory holding
    ``{split}.jsonl``. Task ids are ``gsm8k/{split}/{index}``.
    """
    rows = load_rows(HUB_ID, HUB_CONFIG, split, data_files)
    problems = []
    for i, row in enumerate(rows):
        try:
            question, answer = row["question"], row["answer"]
            if not isinstance(question, str) or not question.strip():
                raise ValueError("empty question")
            gold = gold_from_answer(str(answer))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"GSM8K {split} row {i} is malformed ({exc}); fields needed: question, answer ending '#### N'") from exc
        problems.append(Problem(task_id=f"gsm8k/{split}/{i}", question=question.strip(), reference=gold,
                                solution=str(answer), metadata={"index": i}))
    return problems
