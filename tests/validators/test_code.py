"""KodCode and HumanEval validators, their loaders, extraction and leak checks."""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor

import pytest

from _sandbox_support import backend_fixture, broken, shared_data
from gcop_env.validators.base import Status
from gcop_env.validators.code_extract import extract_code, reveals_code
from gcop_env.validators.humaneval import HumanEvalValidator, load_humaneval
from gcop_env.validators.kodcode import KodCodeValidator, load_kodcode


def kodcode_file():
    return shared_data("kodcode", "kodcode_prefill_sample.jsonl")


box = backend_fixture(pool_size=2)


def fenced(code: str) -> str:
    return f"Here is the implementation:\n\n```python\n{code}\n```\n\nExample:\n\n```python\nprint('usage')\n```\n"


# ------------------------------------------------------------------------------------- KodCode


def test_kodcode_loader_protocol():
    everything = load_kodcode("all", kodcode_file())
    train, test = load_kodcode("train", kodcode_file()), load_kodcode("test", kodcode_file())
    assert len(everything) == 170 and (len(train), len(test)) == (136, 34)
    assert not {p.task_id for p in train} & {p.task_id for p in test}
    assert [p.task_id for p in test] == [p.task_id for p in load_kodcode("test", kodcode_file())]  # seeded
    problem = next(p for p in everything if p.task_id == "Prefill_00000001_I")
    assert problem.reference.startswith("from solution import *")
    assert problem.metadata["entry_point"] == "selection_sort"
    assert "def selection_sort(arr):" in problem.question
    assert problem.solution and problem.metadata["test_info"]


def test_kodcode_corrupt_row_is_named(tmp_path):
    rows = [json.loads(line) for line in kodcode_file().read_text().splitlines()[:3]]
    del rows[1]["test"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:2 .*question_id=.*'test'"):
        load_kodcode("all", bad)
    bad.write_text(json.dumps(rows[0]) + "\n{oops\n")
    with pytest.raises(ValueError, match=r"bad.jsonl: line 2 is not valid JSON"):
        load_kodcode("all", bad)


def test_kodcode_references_pass_and_wrong_ones_fail(box):
    problems = random.Random(1).sample(load_kodcode("all", kodcode_file()), 30)
    validator = KodCodeValidator(sandbox=box)
    with ThreadPoolExecutor(2) as pool:
        right = list(pool.map(lambda p: validator.validate(p, fenced(p.solution)), problems))
        # A wrong solution: the reference with every function returning None.
        wrong = list(pool.map(lambda p: validator.validate(p, fenced(broken(p.solution))), problems[:8]))
    assert [r.status for r in right] == [Status.PASS] * len(problems), [r.details for r in right if r.status != Status.PASS]
    assert all(r.reward == 1.0 for r in right)
    assert all(r.status in (Status.FAIL, Status.ERROR) and r.reward == 0.0 for r in wrong)


def test_kodcode_statuses_and_partial_credit(box):
    problem = next(p for p in load_kodcode("all", kodcode_file()) if p.task_id == "Prefill_00000001_I")
    strict = KodCodeValidator(sandbox=box, timeout=2)
    partial = KodCodeValidator(sandbox=box, partial_credit=True)
    assert strict.validate(problem, "I cannot write code today.").details["reason"] == "no_code"
    syntax = strict.validate(problem, "```python\ndef selection_sort(arr:\n    return arr\n```")
    assert (syntax.status, syntax.details["reason"]) == (Status.ERROR, "syntax")
    imported = strict.validate(problem, "```python\nimport numpy_not_here\ndef selection_sort(arr):\n    return arr\n```")
    assert (imported.status, imported.details["reason"]) == (Status.ERROR, "missing_module")
    assert imported.details["missing_module"] == "numpy_not_here"
    slow = strict.validate(problem, "```python\ndef selection_sort(arr):\n    while True:\n        pass\n```")
    assert slow.status == Status.TIMEOUT and slow.reward == 0.0
    # Returning the input unchanged passes the tests whose input is already sorted.
    lazy = "```python\ndef selection_sort(arr):\n    return arr\n```"
    assert strict.validate(problem, lazy).reward == 0.0
    fraction = partial.validate(problem, lazy)
    assert fraction.status == Status.FAIL and 0.0 < fraction.reward < 1.0
    assert fraction.reward == pytest.approx(fraction.details["passed"] / fraction.details["collected"])


def test_kodcode_infra_is_retried_and_never_a_wrong_answer():
    from gcop_env.sandbox.process_backend import ProcessSandbox

    problem = load_kodcode("all", kodcode_file())[0]
    with ProcessSandbox(python="/nonexistent/python", start_timeout=5) as broken:
        result = KodCodeValidator(sandbox=broken, infra_retries=1).validate(problem, fenced(problem.solution))
    assert result.is_infra and result.status == Status.INFRA


def test_kodcode_leak_check():
    problem = next(p for p in load_kodcode("all", kodcode_file()) if p.task_id == "Prefill_00000001_I")
    validator = KodCodeValidator(sandbox="process")
    assert validator.leaks(problem, "Do this:\n```python\nfor i in range(n): pass\n```")
    assert validator.leaks(problem, "Write it like this: " + problem.solution)
    assert not validator.leaks(problem, "Repeatedly find the minimum of the unsorted suffix and swap it to the front.")
    validator.close()


# ------------------------------------------------------------------------------------ HumanEval


def test_humaneval_loader():
    problems = load_humaneval()
    assert len(problems) == 164 and problems[0].task_id == "HumanEval/0"
    assert load_humaneval("all") == problems
    with pytest.raises(ValueError, match="only a 'test' split"):
        load_humaneval("train")
    local = load_humaneval(data_files=shared_data("humaneval", "HumanEval.jsonl.gz"))
    assert [p.task_id for p in local] == [p.task_id for p in problems]


def test_humaneval_canonical_solutions_pass_and_broken_fail(box):
    problems = random.Random(2).sample(load_humaneval(), 24)
    validator = HumanEvalValidator(sandbox=box)
    with ThreadPoolExecutor(2) as pool:
        bodies = list(pool.map(lambda p: validator.validate(p, p.metadata["canonical_solution"]), problems))
        full = list(pool.map(lambda p: validator.validate(p, fenced(p.solution)), problems[:8]))
        broken = list(pool.map(lambda p: validator.validate(p, "    return None\n"), problems[:8]))
    assert all(r.status == Status.PASS for r in bodies), [r.details for r in bodies if r.status != Status.PASS]
    assert all(r.status == Status.PASS for r in full), [r.details for r in full if r.status != Status.PASS]
    assert all(r.status == Status.FAIL and r.reward == 0.0 for r in broken)


def test_humaneval_full_function_keeps_prompt_helpers(box):
    problem = next(p for p in load_humaneval() if p.task_id == "HumanEval/38")  # decode_cyclic uses encode_cyclic
    reply = fenced("def decode_cyclic(s: str):\n    return encode_cyclic(encode_cyclic(s))")
    assert HumanEvalValidator(sandbox=box).validate(problem, reply).status == Status.PASS


# ----------------------------------------------------------------------------------- extraction


@pytest.mark.parametrize(
    "reply, expected",
    [
        (fenced("def f(x):\n    return x + 1"), "def f(x):\n    return x + 1\n"),
        ("```python\nprint(f(2))\n```\nand\n```python\ndef f(x):\n    return 1\n```", "def f(x):\n    return 1\n"),
        ("```\ndef f(x):\n    return 2\n```", "def f(x):\n    return 2\n"),
        ("```bash\npip install nothing\n```\n```py\ndef f(x):\n    return 3\n```", "def f(x):\n    return 3\n"),
        ("Sure.\ndef f(x):\n    return 4\nThis returns 4.", "def f(x):\n    return 4\n"),
        ("def f(x):\n    return 5\n", "def f(x):\n    return 5\n"),
        ("```python\ndef f(x):\n    return 6\n", "def f(x):\n    return 6\n"),  # truncated: no closing fence
        ("1. Code:\n\n    ```python\n    def f(x):\n        return 7\n    ```", "def f(x):\n    return 7\n"),
        ("No code, sorry.", ""),
    ],
)
def test_extract_code(reply, expected):
    assert extract_code(reply, "f").code == expected


def test_extract_prefers_the_block_defining_the_entry_point():
    reply = "```python\ndef helper(x):\n    return x\n```\n```python\ndef f(x):\n    return helper(x)\n```\n```python\nassert f(1) == 1\n```"
    found = extract_code(reply, "f")
    assert found.defines_entry_point and found.chosen == 1 and found.blocks == 3


def test_reveals_code():
    reference = "def f(a):\n    best = max(a)\n    total = sum(a) - best\n    return total * 2\n"
    assert reveals_code("```python\nx = 1\n```", None)
    assert reveals_code("Use:\ndef f(a):\n    best = max(a)\n    return best\n", None)
    assert reveals_code("set best = max(a) then total = sum(a) - best and return total * 2", reference)
    assert not reveals_code("Take the maximum out of the sum, then double it.", reference)
