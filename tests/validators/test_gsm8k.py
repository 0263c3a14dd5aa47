"""GSM8K answers as people and models write them, read exactly (signs, fractions, separators, powers)."""

from __future__ import annotations

import time
from fractions import Fraction

import pytest

from gcop_env.problem import Problem
from gcop_env.validators.gsm8k import (GSM8KValidator, extract_answer, format_number, gold_from_answer,
                                       load_gsm8k, reference_value)

F = Fraction

# (the core's reply, the number it states, where it was found)
WRITTEN_FORMS = [
    ("\\boxed{18}", F(18), "boxed"),
    ("\\boxed{-18}", F(-18), "boxed"),
    ("\\boxed{−18}", F(-18), "boxed"),  # U+2212 MINUS SIGN
    ("\\boxed{–18}", F(-18), "boxed"),  # U+2013 EN DASH
    ("\\boxed{－18}", F(-18), "boxed"),  # U+FF0D FULLWIDTH HYPHEN-MINUS
    ("\\boxed{﹣18}", F(-18), "boxed"),  # U+FE63 SMALL HYPHEN-MINUS
    ("\\boxed{- 18}", F(-18), "boxed"),
    ("\\boxed{\\frac{1}{2}}", F(1, 2), "boxed"),
    ("\\boxed{\\dfrac{1}{2}}", F(1, 2), "boxed"),
    ("\\boxed{\\tfrac{3}{4}}", F(3, 4), "boxed"),
    ("\\boxed{\\frac12}", F(1, 2), "boxed"),
    ("\\boxed{\\frac{-3}{4}}", F(-3, 4), "boxed"),
    ("\\boxed{-\\frac{3}{4}}", F(-3, 4), "boxed"),
    ("\\boxed{−\\frac{3}{4}}", F(-3, 4), "boxed"),
    ("\\boxed{2\\frac{1}{2}}", F(5, 2), "boxed"),
    ("\\boxed{-2\\frac{1}{2}}", F(-5, 2), "boxed"),
    ("\\boxed{36/2}", F(18), "boxed"),
    ("\\boxed{3/4}", F(3, 4), "boxed"),
    ("\\boxed{-3/4}", F(-3, 4), "boxed"),
    ("\\boxed{10^3}", F(1000), "boxed"),
    ("\\boxed{10^{3}}", F(1000), "boxed"),
    ("\\boxed{2^{10}}", F(1024), "boxed"),
    ("\\boxed{10^{-2}}", F(1, 100), "boxed"),
    ("\\boxed{2.5 \\times 10^{4}}", F(25000), "boxed"),
    ("\\boxed{3 \\cdot 10^3}", F(3000), "boxed"),
    ("\\boxed{1e5}", F(100000), "boxed"),
    ("\\boxed{1.5E3}", F(1500), "boxed"),
    ("\\boxed{1,234}", F(1234), "boxed"),
    ("\\boxed{1{,}234}", F(1234), "boxed"),
    ("\\boxed{1\\,234\\,567}", F(1234567), "boxed"),
    ("\\boxed{1 000}", F(1000), "boxed"),
    ("\\boxed{\\$1,234.00}", F(1234), "boxed"),
    ("\\boxed{$72}", F(72), "boxed"),
    ("\\boxed{72.0}", F(72), "boxed"),
    ("\\boxed{0.5}", F(1, 2), "boxed"),
    ("\\boxed{.5}", F(1, 2), "boxed"),
    ("\\boxed{50\\%}", F(50), "boxed"),
    ("\\boxed{18 \\text{ dollars}}", F(18), "boxed"),
    ("\\boxed{\\text{answer: } 7}", F(7), "boxed"),
    ("\\boxed{x = 5}", F(5), "boxed"),
    ("\\boxed{25 m^2}", F(25), "boxed"),
    ("\\boxed{\\left(\\frac{1}{3}\\right)}", F(1, 3), "boxed"),
    ("first \\boxed{3} then \\boxed{4}", F(4), "boxed"),
    ("\\boxed{\\boxed{9}}", F(9), "boxed"),
    ("\\boxed {12}", F(12), "boxed"),
    ("The total is 5.\n#### 1,000", F(1000), "hashes"),
    ("#### −7", F(-7), "hashes"),
    ("#### 3/8", F(3, 8), "hashes"),
    ("We get 3 apples, then 12 more, so 15 in all.", F(15), "last_number"),
    ("it is -2.50", F(-5, 2), "last_number"),
    ("so 10 - 3 = 7", F(7), "conclusion"),
    ("5-3", F(3), "last_number"),
    ("the answer is 1/3 of a pie", F(1, 3), "cue"),
    ("no number here", None, "none"),
    ("\\boxed{}", None, "none"),
]


@pytest.mark.parametrize("reply, value, source", WRITTEN_FORMS)
def test_written_answer_forms(reply, value, source):
    assert extract_answer(reply) == (value, source)


def test_the_table_covers_at_least_40_forms():
    assert len(WRITTEN_FORMS) >= 40 and len({reply for reply, _, _ in WRITTEN_FORMS}) == len(WRITTEN_FORMS)


@pytest.mark.parametrize("answer, gold", [
    ("... #### 18", "18"), ("#### -3/4", "-0.75"), ("#### 1e5", "100000"), ("#### −5", "-5"),
    ("#### 1,250", "1250"), ("#### 1/3", "1/3"), ("#### \\frac{7}{8}", "0.875"), ("#### 2.50", "2.5"),
])
def test_golds_are_read_exactly(answer, gold):
    assert gold_from_answer(answer) == gold
    assert reference_value(gold) == extract_answer(answer)[0]


def test_comparison_is_exact_on_rationals():
    v = GSM8KValidator()
    third = Problem("t", "q", reference=gold_from_answer("#### 1/3"))
    assert v.validate(third, "\\boxed{\\frac{1}{3}}").reward == 1.0
    assert v.validate(third, "\\boxed{2/6}").reward == 1.0
    assert v.validate(third, "\\boxed{0.3333333333}").reward == 0.0  # close is not equal
    negative = Problem("t", "q", reference="-18")
    assert v.validate(negative, "so \\boxed{−18}").reward == 1.0
    assert v.validate(negative, "so \\boxed{18}").reward == 0.0
    half = Problem("t", "q", reference="0.5")
    result = v.validate(half, "\\boxed{\\frac{1}{2}}")
    assert result.reward == 1.0 and result.details == {"extracted": "0.5", "source": "boxed", "gold": "0.5"}


@pytest.mark.parametrize("value, text", [(F(18), "18"), (F(-3, 4), "-0.75"), (F(1, 3), "1/3"), (F(1, 80), "0.0125"),
                                         (F(-1, 3), "-1/3"), (F(0), "0"), (F(10**20), str(10**20))])
def test_format_number_round_trips(value, text):
    assert format_number(value) == text and reference_value(text) == value


def test_every_offline_gold_reads_back(gsm8k_dir):
    for split in ("test", "train"):
        for problem in load_gsm8k(split, data_files=str(gsm8k_dir)):
            assert reference_value(problem.reference) == extract_answer(problem.solution)[0], problem.task_id


@pytest.mark.parametrize("reply", ["\\boxed{" * 150_000, "{" * 500_000 + "\\boxed{1}" + "}" * 500_000,
                                   "\\boxed{" + "}" * 1_000_000, "1," * 500_000, "x1" * 500_000,
                                   # the statement readers: cues, headers, bold lines, hedges, words, sentences
                                   "the answer is " * 70_000, "\n" * 1_000_000, "**1**\n" * 150_000,
                                   "1 is the answer " * 60_000, "1 or " * 200_000, "So 1. " * 160_000,
                                   "twenty-one and " * 60_000, " " * 1_000_000 + "5", "3 1/2 " * 160_000])
def test_extraction_is_linear_on_a_megabyte(reply):
    started = time.perf_counter()
    extract_answer(reply)
    # generous: the quadratic scan took over 60 s on 240 KB; the linear one is well under this
    assert time.perf_counter() - started < 20
