"""The structure check I_str and GSM8K answer extraction."""

from __future__ import annotations

from decimal import Decimal

import gymnasium as gym
import pytest
from gcop_env.validators.data import DataError
from gcop_env.validators.gsm8k import GSM8KValidator, extract_answer, format_number, gold_from_answer, load_gsm8k
from support import GOOD_GUIDE, SURROGATE_OUTPUTS

import gcop_env  # noqa: F401 - registers the envs
from gcop_env import StructureError, parse_guide_output
from gcop_env.problem import Problem


@pytest.mark.parametrize("text, strategy, think", [
    ("<strategy>Add them.</strategy>", "Add them.", None),
    ("  <think>hmm</think>\n\n<strategy>\n Add them.\n</strategy>\n", "Add them.", "hmm"),
    ("<THINK>a</THINK><Strategy>b</Strategy>", "b", "a"),
    ("<think></think><strategy>use 3 < 4 and a > b</strategy>", "use 3 < 4 and a > b", ""),
])
def test_well_formed(text, strategy, think):
    parsed = parse_guide_output(text)
    assert parsed.structure_ok and parsed.strategy == strategy and parsed.think == think


@pytest.mark.parametrize("text, error", [
    ("", StructureError.EMPTY_OUTPUT),
    ("   ", StructureError.EMPTY_OUTPUT),
    ("no tags at all", StructureError.NO_STRATEGY),
    ("<think>only thinking</think>", StructureError.NO_STRATEGY),
    ("<strategy>never closed", StructureError.UNCLOSED_TAG),
    ("</strategy>", StructureError.UNCLOSED_TAG),
    ("<strategy>a <think>b</think></strategy>", StructureError.NESTED_TAG),
    ("<strategy>a</strategy><strategy>b</strategy>", StructureError.MULTIPLE_STRATEGIES),
    ("<think>a</think><think>b</think><strategy>c</strategy>", StructureError.MULTIPLE_THINKS),
    ("<strategy>c</strategy><think>a</think>", StructureError.THINK_AFTER_STRATEGY),
    ("Sure! <strategy>c</strategy>", StructureError.TEXT_OUTSIDE_TAGS),
    ("<strategy>c</strategy> The answer is 5.", StructureError.TEXT_OUTSIDE_TAGS),
    ("<strategy>  \n </strategy>", StructureError.EMPTY_STRATEGY),
    ("<strategy>" + "a" * 101 + "</strategy>", StructureError.TOO_LONG),
])
def test_malformed(text, error):
    parsed = parse_guide_output(text, max_strategy_chars=100)
    assert not parsed.structure_ok and parsed.error is error and parsed.message and parsed.strategy is None


def test_strategy_budget_boundary_and_round_trip():
    # exactly at the budget is fine, one character over is not; what is parsed re-serialises to itself
    at_budget = parse_guide_output("<think>t</think><strategy>" + "a" * 100 + "</strategy>", max_strategy_chars=100)
    assert at_budget.structure_ok and at_budget.strategy == "a" * 100
    over = parse_guide_output("<strategy>" + "a" * 101 + "</strategy>", max_strategy_chars=100)
    assert not over.structure_ok and over.error is StructureError.TOO_LONG
    parsed = parse_guide_output("<think> plan </think>\n<strategy> 1. add\n2. check </strategy>")
    again = parse_guide_output(f"<think>{parsed.think}</think><strategy>{parsed.strategy}</strategy>")
    assert (again.think, again.strategy) == (parsed.think, parsed.strategy) == ("plan", "1. add\n2. check")


@pytest.mark.parametrize("reply, value, source", [
    ("so \\boxed{18}", "18", "boxed"),
    ("\\boxed{\\$1,234.00} dollars", "1234", "boxed"),
    ("\\boxed{18.0}", "18", "boxed"),
    ("\\boxed{\\text{answer: } 7}", "7", "boxed"),
    ("first \\boxed{3} then \\boxed{4}", "4", "boxed"),
    ("The total is 5.\n#### 1,000", "1000", "hashes"),
    ("We get 3 apples, then 12 more, so 15 in all.", "15", "last_number"),
    ("it is -2.50", "-2.5", "last_number"),
    ("\\boxed{1 000}", "1000", "boxed"),
    ("no number here", None, "none"),
])
def test_extract_answer(reply, value, source):
    got, where = extract_answer(reply)
    assert (format_number(got) if got is not None else None) == value and where == source


def test_validator_scores_numerically():
    v = GSM8KValidator()
    p = Problem("t", "q", reference="72")
    assert v.validate(p, "... \\boxed{72.0}").reward == 1.0
    assert v.validate(p, "... \\boxed{$72}").status.value == "pass"
    assert v.validate(p, "... \\boxed{71}").status.value == "fail"
    assert v.validate(p, "I don't know").status.value == "error"
    assert v.leaks(p, "the result is 72 dollars") and not v.leaks(p, "multiply 7 by 2") and not v.leaks(p, "720 or 172")


QUESTION = "A class has 3 rows of 6 desks and 18 chairs. Each desk seats 1 student. How many seats are free?"


@pytest.mark.parametrize("gold, strategy, kind", [
    # step and list indices are formatting, not the answer
    ("3", "Step 1: count the desks. Step 2: count the chairs. Step 3: subtract.", None),
    ("3", "1. Count the desks.\n2. Count the chairs.\n3. Subtract.", None),
    ("2", "1. Count the desks. 2. Count the chairs. 3. Subtract.", None),
    ("4", "(1) count, (2) compare, (3) check, (4) report", None),
    # numbers the question states are its data (18 is in the question)
    ("18", "There are 3 rows of 6 desks and 18 chairs; compare desks with chairs.", None),
    # a stated answer or the last computed result leaks even when the question holds the number
    ("18", "Compare desks with chairs, so the answer is 18.", "stated_answer"),
    ("18", "Answer: 18", "stated_answer"),
    ("18", "Put \\boxed{18} at the end.", "stated_answer"),
    ("18", "3 rows times 6 desks = 18", "last_result"),
    # the gold as a new number anywhere is a leak; an index word does not protect a stated result
    ("12", "Subtract: you should get 12 free seats.", "new_number"),
    ("12", "Step 12 of the plan is to say the answer is 12.", "stated_answer"),
    ("0", "18 chairs for 18 desks leaves 0 free.", "new_number"),
    ("12", "3 * 6 = 18, and 18 - 6 = 12 more", "last_result"),
    ("12", "It costs $12. Then stop.", "new_number"),  # "12." after "$" is not an item number
])
def test_gsm8k_leak_rule(gold, strategy, kind):
    finding = GSM8KValidator().leak_finding(Problem("t", QUESTION, reference=gold), strategy)
    assert (finding.kind.value if finding else None) == kind
    assert GSM8KValidator().leaks(Problem("t", QUESTION, reference=gold), strategy) is (kind is not None)


def test_gold_and_loader(gsm8k_dir):
    assert gold_from_answer("step\n#### 1,250") == "1250"
    problems = load_gsm8k("test", data_files=str(gsm8k_dir))
    assert len(problems) == 1319 and problems[0].task_id == "gsm8k/test/0"
    assert Decimal(problems[0].reference) == Decimal(gold_from_answer(problems[0].solution))
    assert len(load_gsm8k("train", data_files={"train": str(gsm8k_dir / "train.jsonl")})) == 7473


def test_corrupt_row_is_named(tmp_path):
    f = tmp_path / "test.jsonl"
    f.write_text('{"question": "1+1?", "answer": "#### 2"}\n{"question": "2+2?", "answer": "four"}\n')
    with pytest.raises(DataError, match="row 1"):
        load_gsm8k("test", data_files=str(f))


def test_missing_data_says_what_to_do(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_gsm8k("test", data_files=str(tmp_path / "nope.jsonl"))
    with pytest.raises(DataError, match="no test.jsonl"):
        load_gsm8k("test", data_files=str(tmp_path))


def test_hub_failure_names_the_hub_id_and_data_files(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match=r"openai/gsm8k.*data_files="):
        load_gsm8k("test")



def test_leak_check_reads_golds_exactly_including_non_terminating_fractions():
    # golds are stored canonically ("-0.75", or "1/3" when no finite decimal exists); the leak check
    # reads them as exact rationals: a "1/3" gold used to raise decimal.InvalidOperation here
    v = GSM8KValidator()
    quarter = Problem("t", "A pie loses 7 of its 4 quarters... what is the change?", reference="-0.75")
    assert v.leaks(quarter, "So the answer is -0.75.") and not v.leaks(quarter, "Step 1. Count the quarters.")
    third = Problem("t", "Share 1 pie among 3 people. How much does each get?", reference="1/3")
    assert v.leak_finding(third, "Step 1. Divide the pie by the number of people.") is None
    # a fraction is one number token, in either notation
    assert v.leaks(third, "So the answer is \\frac{1}{3}.") and v.leaks(third, "each gets = 1/3, then stop")
    assert not v.leaks(third, "Give 1 pie to 3 people.")


# -- strategies with nothing visible --------------------------------------------------------------
INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u00a0", "\u3000", "\u2003", "\u202f",
             "\u2028", "\u2029", "\u200e", "\u202e", "\u0000", "\t", "\U000e0020"]


@pytest.mark.parametrize("char", INVISIBLE)
def test_invisible_only_strategy_is_empty(char):
    parsed = parse_guide_output(f"<think>plan</think><strategy>{char * 3} {char}</strategy>")
    assert not parsed.structure_ok and parsed.error is StructureError.EMPTY_STRATEGY
    assert parse_guide_output(char * 5).error is StructureError.EMPTY_OUTPUT


def test_invisible_characters_outside_the_tags_are_not_stray_text():
    parsed = parse_guide_output("\ufeff\u200b<strategy>Add the two numbers.</strategy>\u2060\n")
    assert parsed.structure_ok and parsed.strategy == "Add the two numbers."


def test_zero_width_strategy_is_neither_paid_the_bonus_nor_sent_to_the_core(solver_server, gsm8k_dir):
    env = gym.make("GCoP-GSM8K-v0", core=f"openai:fake@{solver_server.openai_base_url}",
                   data_files=str(gsm8k_dir), limit=3, cache=False)
    env.reset(options={"index": 0})
    _, reward, _, _, info = env.step("<strategy>\u200b\u200b\u200b</strategy>")
    assert reward == 0.0 and info["structure_error"] == "empty_strategy" and solver_server.count() == 0
    env.close()


@pytest.mark.parametrize("text", SURROGATE_OUTPUTS)
def test_lone_surrogate_is_invalid_text(text):
    parsed = parse_guide_output(text)
    assert not parsed.structure_ok and parsed.error is StructureError.INVALID_TEXT and "surrogate" in parsed.message


def test_lone_surrogate_in_a_step_is_malformed_and_calls_nothing(solver_server, gsm8k_dir):
    env = gym.make("GCoP-GSM8K-v0", core=f"openai:fake@{solver_server.openai_base_url}",
                   data_files=str(gsm8k_dir), limit=3)  # the default on-disk cache: its key never sees the text
    env.reset(options={"index": 1})
    _, reward, terminated, _, info = env.step(SURROGATE_OUTPUTS[0])
    assert terminated and reward == 0.0 and info["structure_error"] == "invalid_text"
    assert info["reward_is_task_outcome"] and solver_server.count() == 0
    env.reset(options={"index": 1})
    _, reward, *_ = env.step(GOOD_GUIDE)  # the env still works
    assert reward > 0 and solver_server.count() > 0
    env.close()
