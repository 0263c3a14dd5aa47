"""GSM8K: exact-match scoring of the core's final number, and the dataset loader.

Extraction order: the last ``\\boxed{…}``, else the last ``#### N``, else the last number in the
reply. Normalisation drops thousands separators, ``$``, spaces and a trailing ``.0``; the
comparison is numeric. Gold is the number after ``####`` in the dataset's answer.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from gcop_env.problem import Problem
from gcop_env.validators.base import Status, ValidationResult, Validator
from gcop_env.validators.data import DataError, load_rows
from gcop_env.validators.math_leak import LeakFinding, find_numeric_leak

HUB_ID = "openai/gsm8k"
HUB_CONFIG = "main"

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_HASHES = re.compile(r"####\s*([^\n]+)")


def _last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{…}``, braces balanced."""
    start = text.rfind("\\boxed")
    while start != -1:
        i = text.find("{", start)
        if i != -1 and text[start + len("\\boxed"):i].strip() == "":
            depth, j = 0, i
            while j < len(text):
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                    if depth == 0:
                        return text[i + 1:j]
                j += 1
        start = text.rfind("\\boxed", 0, start)
    return None


def normalize_number(raw: str) -> Decimal | None:
    """``'$1,234.0'`` -> ``Decimal('1234')``; None when there is no number."""
    cleaned = raw.replace("\\$", "").replace("$", "").replace("\\!", "").replace("{,}", "")
    cleaned = re.sub(r"\\(?:text|mathrm|textbf)\{[^}]*\}", " ", cleaned)
    cleaned = cleaned.replace("\\%", "").replace("%", "")
    cleaned = re.sub(r"(?<=\d)[ \u00a0](?=\d{3}\b)", "", cleaned.strip())  # "1 234" thousands
    matches = _NUMBER.findall(cleaned)
    if not matches:
        return None
    token = matches[-1].replace(",", "")
    try:
        value = Decimal(token)
    except InvalidOperation:
        return None
    return value.normalize() if value != value.to_integral_value() else Decimal(int(value))


def extract_answer(text: str) -> tuple[Decimal | None, str]:
    """(the number, where it came from: ``boxed`` / ``hashes`` / ``last_number`` / ``none``)."""
    boxed = _last_boxed(text)
    if boxed is not None:
        value = normalize_number(boxed)
        if value is not None:
            return value, "boxed"
    hashes = _HASHES.findall(text)
    if hashes:
        value = normalize_number(hashes[-1])
        if value is not None:
            return value, "hashes"
    numbers = _NUMBER.findall(text)
    if numbers:
        value = normalize_number(numbers[-1])
        if value is not None:
            return value, "last_number"
    return None, "none"


def gold_from_answer(answer: str) -> str:
    """The gold number of a GSM8K ``answer`` field (the text after ``####``)."""
    if "####" not in answer:
        raise ValueError("answer has no '#### N' line")
    value = normalize_number(answer.rsplit("####", 1)[1])
    if value is None:
        raise ValueError(f"no number after '####': {answer.rsplit('####', 1)[1][:40]!r}")
    return str(value)


class GSM8KValidator(Validator):
    """R = 1 when the core's final number equals the gold number, else 0."""

    answer_format = "math"

    def validate(self, problem: Problem, output: str) -> ValidationResult:
        gold = Decimal(str(problem.reference))
        value, source = extract_answer(output or "")
        if value is None:
            return ValidationResult(0.0, Status.ERROR, {"reason": "no number in the reply", "gold": str(gold)})
        ok = value == gold
        return ValidationResult(1.0 if ok else 0.0, Status.PASS if ok else Status.FAIL,
                                {"extracted": str(value), "source": source, "gold": str(gold)})

    def leaks(self, problem: Problem, strategy: str) -> bool:
        """The strategy states the gold answer (rules in :mod:`gcop_env.validators.math_leak`):
        the gold as a stated answer or last computed result, or as a number that is neither a
        step index nor one the question already gives."""
        return self.leak_finding(problem, strategy) is not None

    def leak_finding(self, problem: Problem, strategy: str) -> LeakFinding | None:
        """Which number leaks the gold and by which rule; None when the strategy does not leak."""
        return find_numeric_leak(problem.question, strategy, Decimal(str(problem.reference)), normalize_number)


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
