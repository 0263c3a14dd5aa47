r"""GSM8K: exact-match scoring of the core's final number, and the dataset loader.

Extraction order: the last ``\boxed{…}``, else the last ``#### N``, else the last number in the
reply. Numbers are read as exact rationals (:class:`fractions.Fraction`) and compared exactly:

* signs written with any minus character (``-``, ``−`` U+2212, ``–``, ``﹣``, ``－``);
* thousands separators ``1,234``, ``1{,}234``, ``1\,234``, ``1 234`` (in a box or after ``####``);
* fractions ``\frac{1}{2}``, ``\dfrac``, ``\tfrac``, ``\frac12``, ``a/b`` and the mixed number
  ``2\frac{1}{2}``;
* exponents ``10^3``, ``10^{3}``, ``2.5 \times 10^{4}``, ``1e5``;
* ``$``, ``\$``, ``%``, ``\%``, ``\text{…}`` units and ``x =`` around the number are ignored.

Gold is the number after ``####`` in the dataset's answer, read the same way and stored as a
canonical string (``18``, ``-0.75``, ``1/3``) that :func:`reference_value` reads back exactly.
"""

from __future__ import annotations

import re
from fractions import Fraction

from gcop_env.problem import Problem
from gcop_env.validators.base import Status, ValidationResult, Validator
from gcop_env.validators.data import DataError, load_rows
from gcop_env.validators.math_leak import LeakFinding, find_numeric_leak

HUB_ID = "openai/gsm8k"
HUB_CONFIG = "main"

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")  # a number token in prose (the leak check's unit)
_HASHES = re.compile(r"####[ \t]*([^\n]+)")
_BOXED = re.compile(r"\\boxed\s*\{")

_MINUS = dict.fromkeys(map(ord, "\u2212\u2012\u2013\u2014\u2010\u2011\ufe63\uff0d\u2796"), "-")
# one numeral: 1,234,567 (true thousands groups only) or 1234, with decimals and a decimal exponent
_NUMERAL = r"(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?"
_POWER = r"\^\s*-?\s*\d+"
_TERM = rf"(?:{_NUMERAL})(?:\s*{_POWER})?"
# a signed term, times a power of ten, over a term: -2.5*10^4, 36/2, -3/4, 1/2
_EXPRESSION = re.compile(
    rf"(?P<minus>-\s*)?(?P<num>{_TERM})(?:\s*\*\s*(?P<times>10\s*{_POWER}))?"
    rf"(?:\s*/\s*(?P<den_minus>-\s*)?(?P<den>{_TERM}))?")
_FRAC = re.compile(r"\\[dt]?frac\s*(?:\{(?P<a>[^{}]*)\}|(?P<a1>\d))\s*(?:\{(?P<b>[^{}]*)\}|(?P<b1>\d))")
_MIXED = re.compile(r"(?<!\d)(?P<whole>\d+)\s*\\[dt]?frac\s*\{\s*(?P<a>\d+)\s*\}\s*\{\s*(?P<b>\d+)\s*\}")
_MAX_EXPONENT = 400  # 10^400 is a number; 1e999999 is an attack on the validator
_MAX_DIGITS = 20000  # a bound on the digits of any intermediate value


def _last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{…}`` whose braces close, in time linear in ``text``.

    One pass matches every brace pair with a stack; each ``\\boxed{`` is then looked up in O(1).
    """
    closing: dict[int, int] = {}
    stack: list[int] = []
    for m in re.finditer(r"[{}]", text):
        if m.group() == "{":
            stack.append(m.start())
        elif stack:
            closing[stack.pop()] = m.start()
    for m in reversed(list(_BOXED.finditer(text))):
        brace = m.end() - 1
        if brace in closing:
            return text[brace + 1:closing[brace]]
    return None


def _clean(raw: str, spaced_thousands: bool) -> str:
    """LaTeX and typography around a number turned into a plain expression (``\\frac{1}{2}`` → ``1/2``)."""
    text = raw.translate(_MINUS)
    text = re.sub(r"\\(?:text|mathrm|textbf|textit|mbox|operatorname)\s*\{[^{}]*\}", " ", text)
    text = re.sub(r"(?<=\d)(?:\{,\}|\\,|\\!|\\;|\\ |~)(?=\d{3}(?!\d))", "", text)  # LaTeX thousands
    if spaced_thousands:
        text = re.sub(r"(?<=\d)[ \u00a0\u202f\u2009](?=\d{3}(?!\d))", "", text)
    text = text.replace("\\$", " ").replace("$", " ").replace("\\%", " ").replace("%", " ")
    text = re.sub(r"\\(?:left|right|displaystyle|,|!|;|:|quad|qquad)", " ", text)
    text = re.sub(r"\\(?:times|cdot)|×|·", "*", text)
    text = _MIXED.sub(_mixed_number, text)  # 2\frac{1}{2} → 5/2 (a sign before it applies to the whole)
    text = _FRAC.sub(lambda m: f"({(m.group('a') or m.group('a1')).strip()})/({(m.group('b') or m.group('b1')).strip()})",
                     text)
    text = re.sub(r"\^\s*\{\s*(-?\s*\d+)\s*\}", r"^\1", text)  # 10^{3} → 10^3
    text = re.sub(r"\((\s*-?[\d.,eE+]+\s*)\)", r"\1", text)  # (1)/(2) → 1/2
    return text


def _mixed_number(m: re.Match) -> str:
    whole, a, b = int(m.group("whole")), int(m.group("a")), int(m.group("b"))
    return f"{whole * b + a}/{b}" if b else m.group(0)


def _term(text: str) -> Fraction | None:
    """``1,234.5``, ``1e5`` or ``10^3`` as a rational; None when absurdly large (bounded time)."""
    text = re.sub(r"\s+", "", text)
    base, _, power = text.partition("^")
    mantissa, _, exp10 = base.lower().replace(",", "").partition("e")
    if len(mantissa) > _MAX_DIGITS or exp10 and abs(int(exp10)) > _MAX_EXPONENT:
        return None
    value = Fraction(mantissa) * (Fraction(10) ** int(exp10) if exp10 else 1)
    if power:
        exponent = int(power)
        if abs(exponent) > _MAX_EXPONENT or abs(exponent) * len(mantissa) > _MAX_DIGITS or value == 0 and exponent < 0:
            return None
        value = value ** exponent
    return value


def _evaluate(m: re.Match) -> Fraction | None:
    try:
        value = _term(m.group("num"))
        if value is not None and m.group("times"):
            times = _term(m.group("times"))
            value = None if times is None else value * times
        if value is not None and m.group("den"):
            den = _term(m.group("den"))
            value = None if not den else value / den
            if value is not None and m.group("den_minus"):
                value = -value
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    if value is not None and m.group("minus"):
        value = -value
    return value


def normalize_number(raw: str, spaced_thousands: bool = True) -> Fraction | None:
    """The last number written in ``raw`` as an exact rational; None when there is none.

    ``'$1,234.0'`` → 1234, ``'−18'`` → −18, ``'\\frac{1}{2}'`` → 1/2, ``'36/2'`` → 18,
    ``'10^3'`` → 1000, ``'1e5'`` → 100000. A minus sign counts only as a sign (``5-3`` is not −3),
    and a number that is the exponent or subscript of a symbol (``m^2``) is not a candidate.
    """
    text = _clean(raw, spaced_thousands)
    for m in reversed(list(_EXPRESSION.finditer(text))):
        if _previous_char(text, m.start()) in ("^", "_") or text[m.start() - 1:m.start()].isalpha():
            continue  # m^2, x_1, CO2: part of a symbol, not a quantity
        value = _evaluate(m)
        if value is not None and m.group("minus") and _previous_char(text, m.start()).isdigit():
            value = -value  # "5-3": a subtraction, and the last number is 3
        return value
    return None


def _previous_char(text: str, index: int) -> str:
    """The last non-blank character before ``index`` ('' at the start)."""
    index -= 1
    while index >= 0 and text[index].isspace():
        index -= 1
    return text[index] if index >= 0 else ""


def format_number(value: Fraction) -> str:
    """Canonical text of a rational: ``18``, ``-0.75`` (when the decimal is exact), else ``1/3``."""
    if value.denominator == 1:
        return str(value.numerator)
    den, twos, fives = value.denominator, 0, 0
    while den % 2 == 0:
        den, twos = den // 2, twos + 1
    while den % 5 == 0:
        den, fives = den // 5, fives + 1
    if den != 1:
        return f"{value.numerator}/{value.denominator}"
    digits = max(twos, fives)
    scaled = abs(value.numerator) * (10 ** digits // value.denominator)
    text = str(scaled).rjust(digits + 1, "0")
    return ("-" if value < 0 else "") + (text[:-digits] + "." + text[-digits:]).rstrip("0").rstrip(".")


def reference_value(reference: object) -> Fraction:
    """A stored gold (``"18"``, ``"-0.75"``, ``"1/3"``, ``"1e5"``) as an exact rational."""
    return Fraction(str(reference).strip())


def extract_answer(text: str) -> tuple[Fraction | None, str]:
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
    value = normalize_number(text, spaced_thousands=False)
    if value is not None:
        return value, "last_number"
    return None, "none"


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
            return ValidationResult(0.0, Status.ERROR, {"reason": "no number in the reply", "gold": format_number(gold)})
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
