"""How often the GSM8K leak check fires, old rule against new, on every problem of a split.

    python benchmarks/leak_check.py [--data-files ../shared/data/gsm8k] [--split train]

Four strategy sets, each built per problem from its own question and gold:

* ``plan``: a templated strategy that numbers its steps 1 to 6 and restates every number of
  the question, with no computed result. It gives nothing away: every flag is a false positive.
* ``plan, inline``: the same plan numbered inline ("1. … 2. …") on one line.
* ``plan + "so the answer is N"``: the plan ending with the stated gold: a true leak.
* ``plan + "… = N"``: the plan ending with a calculation whose result is the gold: a true leak.
* ``reference solution``: the dataset's own worked solution with its ``#### N`` line removed
  (it still computes the answer): a true leak.

The old rule is the one before this change: any number in the strategy equal to the gold.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from decimal import Decimal
from pathlib import Path

from gcop_env.validators.gsm8k import GSM8KValidator, load_gsm8k, normalize_number

REPO = Path(__file__).resolve().parents[1]
_OLD_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")  # the old rule's tokeniser, verbatim


def old_rule_leaks(gold: Decimal, strategy: str) -> bool:
    """The rule before this change: any number equal to the gold is a leak."""
    return any(normalize_number(t) == gold for t in _OLD_NUMBER.findall(strategy))


def question_numbers(question: str) -> list[str]:
    return re.findall(r"\$?(?:\d[\d,]*(?:\.\d+)?|\.\d+)%?", question)


def plan(question: str) -> str:
    given = ", ".join(n.rstrip(",") for n in question_numbers(question)) or "none"
    return ("Step 1: Read the question and name the quantity it asks for.\n"
            f"Step 2: Write down the given numbers: {given}.\n"
            "Step 3: Decide which operation links each pair of quantities.\n"
            "Step 4: Compute the intermediate quantities one at a time.\n"
            "Step 5: Combine them into the quantity the question asks for.\n"
            "Step 6: Check the units and that the size of the result is plausible.")


def plan_inline(question: str) -> str:
    given = ", ".join(n.rstrip(",") for n in question_numbers(question)) or "none"
    return (f"1. Read the question. 2. The problem gives {given}. 3. Link the quantities. "
            "4. Compute step by step. 5. Combine the parts. 6. Check the result.")


def strategy_sets(problem) -> dict[str, tuple[str, bool]]:
    """name -> (strategy, is a true leak)."""
    gold = problem.reference
    solution = problem.solution.rsplit("####", 1)[0].strip()
    return {
        "plan (steps 1-6, question numbers)": (plan(problem.question), False),
        "plan, inline numbering": (plan_inline(problem.question), False),
        'plan + "so the answer is N"': (plan(problem.question) + f"\nSo the answer is {gold}.", True),
        'plan + "... = N" as last result': (plan(problem.question) + f"\nAdding everything up gives a total = {gold}.",
                                            True),
        "reference solution without '#### N'": (solution, True),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-files", default=str(REPO.parent / "shared" / "data" / "gsm8k"))
    parser.add_argument("--split", default="train")
    args = parser.parse_args(argv)
    problems = load_gsm8k(args.split, data_files=args.data_files)
    validator = GSM8KValidator()
    counts: dict[str, list[int]] = {}
    truth: dict[str, bool] = {}
    started = time.perf_counter()
    for problem in problems:
        gold = Decimal(problem.reference)
        for name, (strategy, is_leak) in strategy_sets(problem).items():
            old, new = old_rule_leaks(gold, strategy), validator.leaks(problem, strategy)
            c = counts.setdefault(name, [0, 0])
            c[0] += old
            c[1] += new
            truth[name] = is_leak
    elapsed = time.perf_counter() - started
    n = len(problems)
    gold_in_question = sum(Decimal(p.reference) in {normalize_number(t) for t in question_numbers(p.question)}
                           for p in problems)
    print(f"GSM8K {args.split}: {n} problems; the gold also occurs in the question in {gold_in_question} "
          f"({gold_in_question / n:.1%})")
    print(f"{'strategy set':40} {'true leak':>9} {'old rule flags':>15} {'new rule flags':>15}")
    for name, (old, new) in counts.items():
        print(f"{name:40} {'yes' if truth[name] else 'no':>9} {old / n:>15.2%} {new / n:>15.2%}")
    print(f"({n * len(counts)} checks in {elapsed:.1f}s)")
    false_positive = [name for name, (_, new) in counts.items() if not truth[name] and new]
    return 1 if false_positive else 0


if __name__ == "__main__":
    sys.exit(main())
