"""The deterministic answer-leak check for numeric answers (GSM8K): does a strategy give the gold away?

A number in the strategy leaks the answer when its value is the gold and it is one of:

* a **stated answer**: "the answer is 18", "answer: 18", "final result = 18", ``\\boxed{18}``,
  ``#### 18``. Always a leak, even when 18 also occurs in the question.
* the **last computed result**: the number after the last ``=`` (or "equals") in the strategy.
  Always a leak: the strategy ends its calculation at the answer.
* a **new number**: not a step or list index ("Step 3", "3.", "3)", "(3)", "#3" at the start of
  an item) and not a number the question already states. Numbers copied from the question are
  the problem's data, and numbering the steps of a plan is formatting; neither tells the core
  anything it did not know, so neither is a leak even when it happens to equal the gold.

The rule is the deliberate trade-off of a deterministic check: a strategy that restates a
question number which is also the gold, without saying it is the answer, is not flagged (the LLM
judge still sees it). ``benchmarks/leak_check.py`` measures both error directions on GSM8K train.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from decimal import Decimal
from numbers import Rational
from typing import Callable

# A number token: digits with thousands separators and decimals, or a leading-dot decimal.
# A number token: a LaTeX or slash fraction (read whole, so a gold of 1/3 is seen), else a decimal.
# The question's numbers are read both ways (_PLAIN too): "1/2 of 6" gives the question 1/2, 1, 2 and 6.
_PLAIN = re.compile(r"(?<![\w.])-?(?:\d[\d,]*(?:\.\d+)?|\.\d+)")
_TOKEN = re.compile(r"(?<![\w.])(?:-?\\[dt]?frac\{-?\d+\}\{\d+\}|(?<!/)-?\d+/\d+(?!\d|[.,]\d|/)|-?(?:\d[\d,]*(?:\.\d+)?|\.\d+))")
# "answer is 18", "answer: $18", "final result = 18", "the result will be 18"; the gap between the
# keyword and the number is short and stays inside one clause.
_STATED = re.compile(r"(?:\banswers?\b|\bfinal\s+(?:result|value|total|number)\b|\bresult\b)"
                     r"[^.;\n\d]{0,30}?(?:\bis\b|\bare\b|\bbe\b|\bequals?\b|=|:|\bof\b)\s*\$?\s*$",
                     re.IGNORECASE)
_MARKED = re.compile(r"(?:\\boxed\{\s*\$?|####\s*\$?)$")
_COMPUTED = re.compile(r"(?:=|\bequals?\b|\bequal\s+to\b)\s*\$?\s*$", re.IGNORECASE)
# A step/list index: "Step 3", "step #3", "item 3", "part 3", "(3)", "#3"; or "3." / "3)" / "3:"
# opening an item: at the start of the text or a line, or after a sentence/clause break.
_INDEX_WORD = re.compile(r"\b(?:steps?|items?|parts?|stages?|phases?|points?)\s*#?\s*$", re.IGNORECASE)
_ITEM_START = re.compile(r"(?:^|\n|[.;:!?]\s|\(|#)\s*$")


class LeakKind(str, enum.Enum):
    STATED_ANSWER = "stated_answer"  # "the answer is N", \boxed{N}, #### N
    LAST_RESULT = "last_result"  # the strategy's last "= N"
    NEW_NUMBER = "new_number"  # the gold, not an index, not in the question


@dataclass(frozen=True)
class LeakFinding:
    """Why a strategy leaks: which number, where it starts, and which rule fired."""

    kind: LeakKind
    value: str
    position: int


def _is_index(text: str, start: int, end: int, raw: str) -> bool:
    """True when the integer at text[start:end] numbers a step or a list item."""
    if not raw.isdigit():
        return False
    before = text[max(0, start - 40):start]
    if _INDEX_WORD.search(before):
        return True
    after = text[end:end + 2]
    if before.endswith("(") and after.startswith(")"):
        return True
    if before.endswith("#"):
        return True
    opens_item = bool(re.match(r"[.):](?:\s|$)", after))
    return opens_item and bool(_ITEM_START.search(before))


def find_numeric_leak(question: str, strategy: str, gold: Rational | Decimal,
                      parse: Callable[[str], Rational | Decimal | None]) -> LeakFinding | None:
    """The first number of ``strategy`` that gives ``gold`` away (see the module rules), or None.

    ``parse`` turns a number token into its value (the task's own normaliser, so "1,250" and
    "1250.0" compare as the gold does).
    """
    question_values = {v for pattern in (_TOKEN, _PLAIN) for m in pattern.finditer(question or "")
                       if (v := parse(m.group())) is not None}
    tokens = [(m, parse(m.group())) for m in _TOKEN.finditer(strategy)]
    computed = [m for m, _ in tokens if _COMPUTED.search(strategy[max(0, m.start() - 20):m.start()])]
    last_result = computed[-1] if computed else None
    for match, value in tokens:
        if value is None or value != gold:
            continue
        start, raw = match.start(), match.group()
        before = strategy[max(0, start - 60):start]
        if _STATED.search(before) or _MARKED.search(before):
            return LeakFinding(LeakKind.STATED_ANSWER, raw, start)
        if match is last_result:
            return LeakFinding(LeakKind.LAST_RESULT, raw, start)
        if _is_index(strategy, start, match.end(), raw) or value in question_values:
            continue
        return LeakFinding(LeakKind.NEW_NUMBER, raw, start)
    return None
