"""The GSM8K answer extractor on public, hand-labelled hard sets and on natural solution text.

``tests/validators/data/gsm8k_answers.yaml`` (294 replies in 12 families) was written beside the extractor's
rules; ``tests/validators/data/gsm8k_answers_heldout.yaml`` (48) was written after them, to measure how far
the rules carry to phrasings they were not tuned on. Labels come from reading each reply. The few
replies read wrongly today are listed in ``KNOWN_MISSES`` (strict xfail: a fix must move them out).
``benchmarks/bench_answer_extraction.py`` prints the same sets' figures beside math-verify's.
"""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

import pytest
import yaml

from gcop_env.validators.gsm8k import GSM8KValidator, extract_answer, load_gsm8k, normalize_number, reference_value
from gcop_env.problem import Problem

DATA = Path(__file__).parent / "data"
SETS = {"hard": DATA / "gsm8k_answers.yaml", "heldout": DATA / "gsm8k_answers_heldout.yaml"}
FAMILIES = {"plain", "cue", "stated_not_last", "correction", "answer_first", "number_words", "last_stated",
            "markdown", "negation", "multiple", "ambiguous", "no_answer"}

# Read wrongly today (reply prefixes). Each is a concluding sentence followed by a sentence that
# states a further number without being a check or an aside: telling "At 100 km/h this takes 3
# hours" (an aside) from "She then gives 5 away, leaving 10" (a next step) needs the question.
KNOWN_MISSES = {
    "Therefore, Tom needs 6 buses.",
    "Therefore, it will take 8 days.",
    "Hence, John is 12 years old.",
    "Thus, the train travels 300 km.",
    "So there are 18 girls in the class.",
    "So the garden needs 16 meters of fence.",
    "So, the bakery sells 450 loaves in a week.",
    "Thus, Lisa needs to score 92 on the last test.",
    "Therefore, 64 tiles are needed.",
}


def load_set(name: str) -> list[dict]:
    return yaml.safe_load(SETS[name].read_text(encoding="utf-8"))


CASES = [(name, i, case) for name in SETS for i, case in enumerate(load_set(name))]


def _known_miss(reply: str) -> bool:
    return any(reply.startswith(prefix) for prefix in KNOWN_MISSES)


@pytest.mark.parametrize("name, minimum", [("hard", 250), ("heldout", 40)])
def test_the_sets_are_well_formed(name, minimum):
    cases = load_set(name)
    assert len(cases) >= minimum
    assert all(set(case) == {"family", "answer", "reply"} for case in cases)
    assert {case["family"] for case in cases} == FAMILIES
    assert len({case["reply"] for case in cases}) == len(cases), "a reply is written twice"
    for case in cases:
        assert case["answer"] is None or isinstance(Fraction(case["answer"]), Fraction)
        assert isinstance(case["reply"], str) and case["reply"].strip()


def test_the_known_misses_are_cases_of_the_set():
    replies = [case["reply"] for _, _, case in CASES]
    for prefix in KNOWN_MISSES:
        assert sum(reply.startswith(prefix) for reply in replies) == 1, prefix


@pytest.mark.parametrize("name, index, case", [
    pytest.param(name, i, case, id=f"{name}-{case['family']}-{i}",
                 marks=[pytest.mark.xfail(strict=True, reason="known miss")] if _known_miss(case["reply"]) else [])
    for name, i, case in CASES])
def test_labelled_reply(name, index, case):
    value, source = extract_answer(case["reply"])
    if case["answer"] is None:
        # an ambiguous answer or none at all is never read as a number
        assert value is None, f"read {value} ({source}) where the reply commits to no single answer"
        assert source in ("none", "ambiguous")
    else:
        assert value == Fraction(case["answer"]), f"read {value} ({source}), labelled {case['answer']}"


@pytest.mark.parametrize("reply", [
    "The answer is either 39 or 44.", "\\boxed{39 \\text{ or } 44}", "#### 39 or 44", "\\boxed{39, 44}",
    "The answer is 39 (or possibly 44).", "The answer is 39. Or maybe 44.", "It is between 39 and 44.",
])
def test_an_ambiguous_answer_scores_zero_even_when_one_choice_is_gold(reply):
    result = GSM8KValidator().validate(Problem("t", "q", reference="44"), reply)
    assert result.reward == 0.0 and result.details["source"] == "ambiguous"
    assert "two different numbers" in result.details["reason"]


@pytest.mark.parametrize("reply, value", [
    ("\\boxed{39 \\text{ or } 39.0}", Fraction(39)),  # the same number twice is one answer
    ("The answer is 250 miles, which took about 4 or 5 hours.", Fraction(250)),  # an incidental "4 or 5"
    ("Thus, the answer is 2,400 dollars per year, or 200 per month.", Fraction(2400)),
    ("100/5 = 5A/5 or 20 = A", Fraction(20)),  # "or" between terms of an expression
])
def test_an_or_that_offers_no_second_answer_is_not_ambiguous(reply, value):
    assert extract_answer(reply)[0] == value


def test_natural_solutions_without_their_hashes_line(gsm8k_dir):
    """Every offline GSM8K reference solution, its ``#### N`` line and calculator notes removed:
    plain chain-of-thought ending in the result. The extractor reads the gold at least as often as
    the last-number rule it replaces (measured: 99.3% against 97.2% over train and test)."""
    problems = load_gsm8k("test", data_files=str(gsm8k_dir)) + load_gsm8k("train", data_files=str(gsm8k_dir))
    ours = last_number = 0
    for problem in problems:
        body = re.sub(r"<<[^>]*>>", "", problem.solution.rsplit("####", 1)[0]).strip()
        gold = reference_value(problem.reference)
        ours += extract_answer(body)[0] == gold
        last_number += normalize_number(body, spaced_thousands=False) == gold
    assert len(problems) > 8000
    assert ours / len(problems) >= 0.99 and ours > last_number
