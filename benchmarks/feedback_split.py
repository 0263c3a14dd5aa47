"""How the offline code datasets split into feedback tests and reward tests for multi-turn episodes.

    python benchmarks/feedback_split.py [--vet]

KodCode sample: how many rows' pytest files have ≥ 2 test units (split: the first max(1, n // 3)
units are feedback, the rest reward) and how many have one (status-only feedback, the whole file is
the reward). HumanEval: how many prompts have docstring examples that parse (feedback tests; the
reward stays ``check()``); with ``--vet``, how many examples survive the check against the reference
solution (it runs them in the process sandbox, as the env does before its first feedback).
The multi-turn leak tests (tests/envs/test_multiturn_leaks.py) assert the same numbers.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

from gcop_env.validators.feedback_tests import (
    humaneval_examples,
    split_pytest_file,
    unit_names,
)
from gcop_env.validators.humaneval import load_humaneval
from gcop_env.validators.kodcode import load_kodcode

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kodcode", default=str(SHARED / "kodcode" / "kodcode_prefill_sample.jsonl"))
    parser.add_argument("--vet", action="store_true", help="check HumanEval's examples against the reference")
    args = parser.parse_args(argv)

    kodcode = load_kodcode("all", data_files=args.kodcode)
    units = collections.Counter(len(unit_names(p.reference)) for p in kodcode)
    splits = [split_pytest_file(p.reference) for p in kodcode]
    split = [s for s in splits if s is not None]
    feedback_units = collections.Counter(len(s.feedback_units) for s in split)
    print(f"KodCode sample: {len(kodcode)} problems; test units per file: {dict(sorted(units.items()))}")
    print(f"  split (>= 2 units): {len(split)}; feedback units {sum(len(s.feedback_units) for s in split)}, "
          f"reward units {sum(len(s.reward_units) for s in split)}; problems with 1 / 2 feedback units: "
          f"{feedback_units[1]} / {feedback_units[2]}")
    print(f"  status-only (1 unit): {len(kodcode) - len(split)}")

    humaneval = load_humaneval()
    examples = {p.task_id: humaneval_examples(p.metadata["prompt"], p.metadata["entry_point"]) for p in humaneval}
    with_examples = [t for t, e in examples.items() if e]
    print(f"HumanEval: {len(humaneval)} problems; with docstring examples that parse: {len(with_examples)} "
          f"({sum(len(e) for e in examples.values())} examples); status-only: {len(humaneval) - len(with_examples)}")
    result = {"kodcode": len(kodcode), "kodcode_split": len(split), "humaneval_examples": len(with_examples)}
    if args.vet:
        from gcop_env.validators.humaneval import HumanEvalValidator

        from gcop_env.step.feedback import HumanEvalFeedback

        validator = HumanEvalValidator(sandbox="process")
        source = HumanEvalFeedback(validator)
        kept, dropped = 0, []
        for problem in humaneval:
            prepared = source.prepare(problem)
            if prepared.feedback_tests is None:
                continue
            vetted = source.vet(prepared)
            kept += len(vetted.feedback_units)
            if len(vetted.feedback_units) < len(prepared.feedback_units):
                dropped.append(problem.task_id)
        validator.close()
        print(f"  vetted against the reference solution: {kept} examples kept; dropped some on {dropped}")
        result["humaneval_examples_kept"] = kept
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
