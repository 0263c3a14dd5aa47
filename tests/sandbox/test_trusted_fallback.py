"""Which test files run under trusted isolation and which in-process, decided before anything runs.

The decision reads the test file alone (:func:`gcop_env.sandbox.judge.plan.trusted_blocker`), so
the candidate's code cannot move a run to the weaker isolation; every verdict says which it had,
and ``gcop score`` counts them. The datasets at hand run trusted throughout.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from _sandbox_support import GOOD, TESTS, make_backend, shared_data
from gcop_env.sandbox.judge.plan import Plan


def _why(tests: str) -> str | None:
    return Plan(textwrap.dedent(tests), "/work/run/test_solution.py").why_in_process


BLOCKED = {
    "monkeypatch": "def test_a(monkeypatch):\n    monkeypatch.setattr('builtins.input', lambda: '1')\n",
    "mock": "from unittest import mock\n\ndef test_a():\n    with mock.patch('solution.f'):\n        pass\n",
    "patch": "from unittest.mock import patch\n",
    "tmp_path": "def test_a(tmp_path):\n    (tmp_path / 'x').write_text('1')\n",
    "open": "def test_a():\n    open('data.txt', 'w').write('1')\n",
    "tempfile": "import tempfile\n",
    "os.environ": "import os\n\ndef test_a():\n    os.environ['X'] = '1'\n",
    "os.path": "import os\n\ndef test_a():\n    assert os.path.exists('x')\n",
    "sys.stdin": "import sys, io\n\ndef test_a():\n    sys.stdin = io.StringIO('1')\n",
    "random seed": "import random\n\ndef test_a():\n    random.seed(0)\n",
    "numpy seed": "import numpy as np\n\ndef test_a():\n    np.random.seed(0)\n",
    "setrecursionlimit": "import sys\n\ndef test_a():\n    sys.setrecursionlimit(10 ** 6)\n",
    "caplog": "def test_a(caplog):\n    pass\n",
    "logging": "import logging\n",
    "warnings": "import pytest\n\ndef test_a():\n    with pytest.warns(UserWarning):\n        pass\n",
    "filterwarnings": "import pytest\nfrom solution import f\n\n@pytest.mark.filterwarnings('error')\ndef test_a():\n"
                      "    f()\n",
    "inspect": "import inspect\nfrom solution import f\n\ndef test_a():\n    inspect.getsource(f)\n",
    "__dict__": "import solution\n\ndef test_a():\n    assert 'f' in solution.__dict__\n",
    "__code__": "from solution import f\n\ndef test_a():\n    assert f.__code__.co_argcount == 1\n",
    "subclassing": "from solution import *\n\nclass Mine(Base):\n    pass\n",
    "subclassing an explicit import": "from solution import Base\n\nclass Mine(Base):\n    pass\n",
    "threads": "import threading\n",
    "subprocess": "import subprocess\n",
    "asyncio": "import asyncio\n",
    "pickle": "import pickle\n",
    "input": "def test_a():\n    input()\n",
    "setattr": "import solution\n\ndef test_a():\n    setattr(solution, 'f', None)\n",
}


@pytest.mark.parametrize("name", BLOCKED, ids=list(BLOCKED))
def test_what_needs_one_process_is_named(name):
    why = _why(BLOCKED[name])
    assert why is not None and why.startswith("the tests "), (name, why)


TRUSTED = {
    "plain": TESTS,
    "pytest helpers": "import pytest\nfrom solution import *\n\ndef test_a():\n    with pytest.raises(ValueError):\n        f()\n"
                      "    assert f() == pytest.approx(1.0)\n",
    "fixtures and parametrize": "import pytest\nfrom solution import f\n\n@pytest.fixture\ndef x():\n    return 1\n\n"
                                "@pytest.mark.parametrize('n', [1, 2])\ndef test_a(x, n):\n    assert f(n) == x\n",
    "output capture": "from solution import f\n\ndef test_a(capsys):\n    f()\n    assert capsys.readouterr().out\n",
    "redirect_stdout": "import io, contextlib\nfrom solution import f\n\ndef test_a():\n    buf = io.StringIO()\n"
                       "    with contextlib.redirect_stdout(buf):\n        f()\n",
    "a test class": "from solution import *\n\nclass TestThing:\n    def test_a(self):\n        assert f()\n",
    "a class of its own": "from solution import *\n\nclass Helper(dict):\n    pass\n\ndef test_a():\n    assert f(Helper())\n",
    "unseeded randomness, os.linesep": "import random, os\nfrom solution import f\n\ndef test_a():\n"
                                       "    assert f(random.randint(1, 9)) and os.linesep\n",
    "numpy and pandas": "import numpy as np\nimport pandas as pd\nfrom solution import f\n\ndef test_a():\n"
                        "    np.testing.assert_allclose(f(np.ones(3)), np.ones(3))\n",
    "HumanEval's harness": "import solution as _solution\nfrom solution import *\n\nMETADATA = {}\n\ndef check(candidate):\n"
                           "    assert candidate(1) == 2\n\ndef test_check():\n    check(_solution.f)\n",
}


@pytest.mark.parametrize("name", TRUSTED, ids=list(TRUSTED))
def test_everyday_test_files_run_trusted(name):
    assert _why(TRUSTED[name]) is None, _why(TRUSTED[name])


def test_the_datasets_at_hand_run_trusted_throughout():
    """The shares asked for: at least 95% of the KodCode sample, all of HumanEval (all are, here)."""
    from gcop_env.validators.humaneval import _CHECK, load_humaneval
    from gcop_env.validators.kodcode import load_kodcode

    kodcode = [p.reference for p in load_kodcode("all", shared_data("kodcode", "kodcode_prefill_sample.jsonl"))]
    humaneval = [_CHECK.format(test=p.reference, entry_point=p.metadata["entry_point"]) for p in load_humaneval()]
    assert [t for t in kodcode if _why(t)] == [] and len(kodcode) == 170
    assert [t for t in humaneval if _why(t)] == [] and len(humaneval) == 164


def test_the_candidate_cannot_choose_the_isolation():
    """The same test file runs in the same isolation whatever the solution does (here: a solution
    that would love to share the tests' process)."""
    box = make_backend("process", pool_size=1)
    try:
        outcomes = [box.run_pytest({"solution.py": solution, "test_solution.py": TESTS}, 10) for solution in (
            GOOD, "import sys, gc\nsys.modules['test_solution'] = None\ndef answer():\n    return 41\n",
            "raise SystemExit(0)\n", "import os\nos._exit(0)\n")]
    finally:
        box.close()
    assert {o.isolation for o in outcomes} == {"trusted"}, [(o.isolation, o.isolation_note) for o in outcomes]
    assert [o.all_passed for o in outcomes] == [True, False, False, False]


def test_gcop_score_counts_the_isolations(tmp_path, capsys):
    from gcop_env.validators.humaneval import load_humaneval
    from gcop_env.cli.score import score_cli

    problems = load_humaneval()[:2]
    predictions = tmp_path / "p.jsonl"
    predictions.write_text("".join(json.dumps({"task_id": p.task_id, "completion": p.metadata["canonical_solution"]}) + "\n"
                                   for p in problems))
    out = tmp_path / "r.jsonl"
    assert score_cli(["--task", "humaneval", "--predictions", str(predictions), "--sandbox", "process", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["isolation"] == {"trusted": 2}, summary
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["details"]["isolation"] for r in rows} == {"trusted"}
