"""Every way the sandbox runs a test file gives pytest's verdicts: both runners, both isolations.

Every case runs in the four modes (trusted or in-process isolation; the plain runner wherever it
can, or pytest) on the same warm sandbox (both backends); the per-test outcomes, counts and
pass/fail must be those of pytest in one process (in-process/pytest: how a test file always ran
before trusted isolation). The reference solutions of the KodCode sample and of HumanEval, each
also broken, are compared the same way.
"""

from __future__ import annotations

import re
import textwrap

import pytest

from _sandbox_support import GOOD, MODES, TESTS, sandbox, shared_data, use_mode, use_runner  # noqa: F401  (sandbox is a fixture)
from gcop_env.sandbox.candidate.monitor import version_watcher as _version_watcher
from gcop_env.sandbox.judge.plan import Plan as _Plan
from gcop_env.sandbox.supervisor.warmup import PROBE_SOURCE as _PROBE_SOURCE
from _sandbox_support import _break  # every function returns None

PLAIN = "plain"
HANDED_OVER = "handed over"  # the plain runner started, then pytest ran it from scratch
PYTEST = "pytest"  # not plain from its text: pytest from the start


def _case(solution: str, tests: str, runner: str, isolation: str = "trusted", trusted=None, **expect):
    """``runner``: how the plain runner takes the file; ``isolation``: what "auto" isolation gives it;
    ``trusted``: what differs under trusted isolation (then not compared with the reference)."""
    return pytest.param(textwrap.dedent(solution), textwrap.dedent(tests), runner,
                        dict(expect, isolation=isolation, trusted=trusted))


CASES = {
    "passes": _case(GOOD, TESTS, PLAIN, passed=2),
    "wrong_answer": _case("def answer():\n    return 41\n", TESTS, PLAIN, passed=1, failed=1),
    "skip_xfail_fail_in_tests": _case(GOOD, """
        import pytest, unittest
        from solution import *

        def test_skip():
            pytest.skip("not today")

        def test_xfail():
            pytest.xfail("known")

        def test_unittest_skip():
            raise unittest.SkipTest("no")

        def test_fail():
            pytest.fail("boom")

        def test_ok():
            assert answer() == 42
        """, PLAIN, passed=1, failed=1, skipped=3),
    "exits_inside_a_test": _case("import sys\ndef answer():\n    sys.exit(0)\n", TESTS, PLAIN, failed=2),
    "keyboard_interrupt_ends_the_session": _case(
        "def answer():\n    raise KeyboardInterrupt\n", TESTS, PLAIN, not_run=2),
    "pytest_exit_ends_the_session": _case("import pytest\ndef answer():\n    pytest.exit('stop', returncode=0)\n",
                                          TESTS, PLAIN, not_run=2),
    "raises_and_approx": _case("def half(x):\n    if x < 0:\n        raise ValueError(x)\n    return x / 2\n", """
        import pytest
        from solution import half

        def test_raises():
            with pytest.raises(ValueError):
                half(-1)

        def test_approx():
            assert half(0.6) == pytest.approx(0.3)

        def test_raises_not():
            with pytest.raises(ValueError):
                half(1)
        """, PLAIN, passed=2, failed=1),
    "reading_stdin_is_an_error_as_under_pytest": _case("""
        def answer():
            try:
                return int(input())
            except EOFError:  # pytest's captured stdin raises OSError, not EOFError
                return 42
        """, TESTS, PLAIN, failed=2),
    "deprecation_warnings_are_shown_as_under_pytest": _case("""
        import warnings
        def old():
            warnings.warn("old", DeprecationWarning)
            return 1
        """, """
        import warnings
        from solution import old

        def test_recorded():
            with warnings.catch_warnings(record=True) as seen:
                old()
            assert len(seen) == 1
        """, PLAIN, "in-process", passed=1),
    "logging_is_configured_as_under_pytest": _case("""
        import logging
        def configure():
            logging.basicConfig(level=logging.DEBUG)  # a no-op while pytest's handlers are on the root logger
            return logging.getLogger().level
        """, """
        import logging
        from solution import configure

        def test_level():
            assert configure() == logging.DEBUG
        """, PLAIN, "in-process", failed=1),
    "pytest_current_test_is_set": _case("import os\ndef answer():\n    return os.environ['PYTEST_CURRENT_TEST']\n", """
        from solution import answer

        def test_env():
            assert answer() == "test_solution.py::test_env (call)"
        """, PLAIN, passed=1),
    "a_test_returning_a_value": _case(GOOD, "from solution import *\n\ndef test_value():\n    return answer()\n", PLAIN,
                                      passed=1),
    "order_and_shared_state": _case(GOOD, """
        seen = []

        def test_b():
            seen.append("b")

        def test_a():
            seen.append("a")
            assert seen == ["b", "a"]
        """, PLAIN, passed=2),
    "flood_of_output": _case("def answer():\n    print('x' * 200000)\n    return 42\n", TESTS, PLAIN, passed=2),
    "import_error": _case("import no_such_module_here\ndef answer():\n    return 42\n", TESTS, PLAIN, errors=1),
    "error_at_import": _case("answer = undefined_name\n", TESTS, PLAIN, errors=1),
    # Handed over after the import: what the module holds is not all plain test functions. (In one
    # process the monitor calls a solution's tests tampering; under trusted isolation the star
    # import does not bring them: the file's own tests decide, and the answer is right.)
    "solution_defines_a_test_function": _case(GOOD + "\ndef test_extra():\n    assert False\n", TESTS, HANDED_OVER,
                                              trusted={"runner": PLAIN, "passed": 2, "all_passed": True}),
    "solution_defines_a_test_class": _case(GOOD + "\nclass TestMore:\n    def test_x(self):\n        pass\n", TESTS,
                                           HANDED_OVER, trusted={"runner": PLAIN, "passed": 2, "all_passed": True}),
    "a_generator_test": _case(GOOD, "from solution import *\n\ndef test_gen():\n    yield answer()\n", HANDED_OVER),
    "module_level_skip_in_the_solution": _case(
        "import pytest\npytest.skip('no', allow_module_level=True)\n", TESTS, HANDED_OVER),
    "solution_exits_at_import": _case("import sys\nsys.exit(0)\n", TESTS, HANDED_OVER),
    # Not plain from the text: pytest from the start.
    "fixtures": _case(GOOD, """
        import pytest
        from solution import *

        @pytest.fixture
        def expected():
            return 42

        def test_answer(expected):
            assert answer() == expected
        """, PYTEST, passed=1),
    "parametrize": _case(GOOD, """
        import pytest
        from solution import *

        @pytest.mark.parametrize("x", [1, 2])
        def test_answer(x):
            assert answer() == 42
        """, PYTEST, passed=2),
    "a_test_class": _case(GOOD, "from solution import *\n\nclass TestA:\n    def test_a(self):\n        assert answer() == 42\n",
                          PYTEST, passed=1),
    "async_test": _case(GOOD, "async def test_a():\n    pass\n", PYTEST),
    "setup_module": _case(GOOD, "from solution import *\n\ndef setup_module():\n    pass\n\ndef test_a():\n    pass\n",
                          PYTEST, passed=1),
}


def _shape(outcome):
    """What a verdict is made of (not the messages, whose format differs)."""
    return {
        "all_passed": outcome.all_passed,
        "tests": [(t.nodeid, t.outcome) for t in outcome.tests],
        "counts": (outcome.collected, outcome.passed, outcome.failed, outcome.errors, outcome.skipped, outcome.not_run),
        "complete": outcome.complete,
        "collect_errors": len(outcome.collect_errors),
        "monitor": [m["family"] for m in outcome.monitor],
        "timed_out": outcome.timed_out,
        "infra": outcome.infra_error,
    }


REFERENCE = "in-process/pytest"


def _modes(box, files, timeout=10.0):
    """{mode: outcome} of ``files`` in every mode (see _sandbox_support.MODES)."""
    found = {}
    for mode in MODES:
        with use_mode(box, mode):
            found[mode] = box.run_pytest(files, timeout)
    return found


def _both(box, files, timeout=10.0):
    """(trusted isolation with the plain runner, in-process pytest): the default and the reference."""
    found = _modes(box, files, timeout)
    return found["trusted/plain"], found[REFERENCE]


@pytest.mark.parametrize(("solution", "tests", "runner", "expect"), CASES.values(), ids=CASES.keys())
def test_same_verdict_as_pytest(sandbox, solution, tests, runner, expect):
    found = _modes(sandbox, {"solution.py": solution, "test_solution.py": tests})
    reference = found[REFERENCE]
    assert reference.runner == "pytest" and reference.isolation == "in-process"
    for mode, outcome in found.items():
        isolation, how = mode.split("/")
        special = expect["trusted"] if isolation == "trusted" and expect["isolation"] == "trusted" else None
        if special is None:
            assert _shape(outcome) == _shape(reference), (mode, outcome.output, reference.output)
        assert outcome.isolation == (expect["isolation"] if isolation == "trusted" else "in-process"), (mode, outcome)
        expected_runner = (special or {}).get("runner", runner)
        if how == "pytest":
            assert outcome.runner == "pytest", (mode, outcome.runner)
        elif expected_runner == HANDED_OVER:
            assert outcome.runner.startswith("pytest (plain runner: "), (mode, outcome.runner)
        else:
            assert outcome.runner == expected_runner, (mode, outcome.runner)
        for key, value in dict(expect, **(special or {})).items():
            if key not in ("isolation", "trusted", "runner"):
                assert getattr(outcome, key) == value, (mode, key, outcome)


@pytest.mark.parametrize("mode", ["trusted/plain", "in-process/plain"])
def test_failure_messages_show_the_compared_values(sandbox, mode):
    with use_mode(sandbox, mode):
        outcome = sandbox.run_pytest({"solution.py": "def answer():\n    return 41\n", "test_solution.py": TESTS}, 10)
    assert outcome.runner == PLAIN
    message = next(t.message for t in outcome.tests if t.outcome == "failed")
    assert "test_solution.py:5: in test_answer" in message and "assert answer() == 42" in message, message
    assert "E   AssertionError: assert 41 == 42" in message, message
    assert "1 failed, 1 passed" in outcome.output


def test_a_missing_module_in_the_solution_is_named_as_under_pytest(sandbox):
    from gcop_env.validators.base import Status
    from gcop_env.validators.code import CodeValidator

    files = {"solution.py": "import no_such_module_here\n", "test_solution.py": TESTS}
    for mode in MODES:
        with use_mode(sandbox, mode):
            result = CodeValidator(sandbox=sandbox).score(sandbox.run_pytest(files, 10))
        assert result.status is Status.ERROR and result.details["missing_module"] == "no_such_module_here", (mode, result.details)


def _numbers(outcome):
    return re.search(r"gcop-headroom (\d+) (\d+)", outcome.tests[0].message).groups()


def test_recursion_headroom_is_pytests(sandbox):
    """A test that recurses close to the limit passes or fails alike: the same headroom in every mode."""
    # The worker's own probe (it reports the headroom at import and in the test in its message),
    # run here as a task's test file after the server's calibration.
    found = _modes(sandbox, {"solution.py": GOOD, "test_solution.py": "import sys\n" + _PROBE_SOURCE})
    assert found["trusted/plain"].runner == found["in-process/plain"].runner == PLAIN
    assert len({_numbers(outcome) for outcome in found.values()}) == 1, {m: _numbers(o) for m, o in found.items()}
    assert sandbox.versions["plain_runner"].startswith("on ("), sandbox.versions


def test_the_solutions_recursion_headroom_is_pytests(sandbox):
    """A solution that recurses close to the limit passes or fails alike: under trusted isolation it
    runs in its own process, as deep as it would be called in one process under pytest."""
    from gcop_env.sandbox.supervisor.warmup import PROBE_SOLUTION, PROBE_SOLUTION_TESTS

    found = _modes(sandbox, {"solution.py": PROBE_SOLUTION, "test_solution.py": PROBE_SOLUTION_TESTS})
    assert found["trusted/plain"].isolation == "trusted"
    assert len({_numbers(outcome) for outcome in found.values()}) == 1, {m: _numbers(o) for m, o in found.items()}
    assert "as in one process" in sandbox.versions["isolation"], sandbox.versions


def test_a_deep_recursion_fails_alike(sandbox):
    solution = "def depth(n):\n    return 0 if n == 0 else 1 + depth(n - 1)\n"
    tests = "from solution import depth\n\ndef test_deep():\n    assert depth(%d) >= 0\n"
    outcomes = set()
    for n in (900, 930, 940, 945, 950, 955, 960, 990):
        found = _modes(sandbox, {"solution.py": solution, "test_solution.py": tests % n})
        assert found["trusted/plain"].runner == PLAIN and found["trusted/plain"].isolation == "trusted"
        reference = _shape(found[REFERENCE])
        outcomes.add(reference["all_passed"])
        for mode, outcome in found.items():
            assert _shape(outcome) == reference, (n, mode)
    assert outcomes == {True, False}  # (the depths straddle the limit)


def _reference_jobs():
    from gcop_env.validators.humaneval import _CHECK, load_humaneval
    from gcop_env.validators.kodcode import load_kodcode

    jobs = []
    for problem in load_kodcode("all", shared_data("kodcode", "kodcode_prefill_sample.jsonl")):
        jobs.append((problem.task_id, problem.solution, problem.reference))
    for problem in load_humaneval():
        test = _CHECK.format(test=problem.reference, entry_point=problem.metadata["entry_point"])
        jobs.append((problem.task_id, problem.metadata["prompt"] + problem.metadata["canonical_solution"], test))
    return jobs


def test_reference_solutions_same_verdicts(sandbox):
    """All 170 KodCode and 164 HumanEval references, each as written and broken: every verdict and
    every test's outcome as under pytest; nearly all of them run by the plain runner."""
    plain_runs = handed_over = trusted = 0
    jobs = _reference_jobs()
    for name, solution, tests in jobs:
        for variant in (solution, _break(solution)):
            found = _modes(sandbox, {"solution.py": variant, "test_solution.py": tests}, timeout=20)
            plain, reference = found["trusted/plain"], found[REFERENCE]
            for mode, outcome in found.items():
                assert _shape(outcome) == _shape(reference), (name, mode, outcome.output[-2000:], reference.output[-2000:])
            plain_runs += plain.runner == PLAIN
            handed_over += plain.runner.startswith("pytest (")
            trusted += plain.isolation == "trusted"
            if variant is solution:
                assert reference.all_passed, (name, reference.output[-2000:])
    assert plain_runs >= 0.95 * 2 * len(jobs), (plain_runs, handed_over, len(jobs))
    assert trusted == 2 * len(jobs), trusted  # every one of them runs under trusted isolation


def test_plan_reads_a_file_once():
    plan = _Plan(TESTS, "/work/run/test_solution.py")
    assert plan.expected == {"test_answer", "test_type"} and plan.needed == {"solution"}
    assert plan.tests == ["test_answer", "test_type"] and plan.why_not is None
    for source, why in (
        ("import pytest\n@pytest.fixture\ndef x():\n    return 1\ndef test_a(x):\n    pass\n", "decorated"),
        ("def test_a(x):\n    pass\n", "arguments"),
        ("class TestA:\n    def test_a(self):\n        pass\n", "class"),
        ("pytestmark = []\ndef test_a():\n    pass\n", "pytestmark"),
        ("from helpers import test_thing\n", "test_thing"),
        ("import pytest\npytest.importorskip('numpy')\ndef test_a():\n    pass\n", "expression"),
        ("try:\n    import numpy\nexcept ImportError:\n    numpy = None\ndef test_a():\n    pass\n", "Try"),
        ("def helper():\n    global test_b\ndef test_a():\n    pass\n", "global"),
        ("x = (test_b := 1)\ndef test_a():\n    pass\n", "assignment expression"),
        ("def f(:\n", "parse"),
    ):
        plan = _Plan(source, "/work/run/test_solution.py")
        assert plan.tests is None and why in plan.why_not, (source, plan.why_not)


def test_dict_versions_see_every_change():
    watch = _version_watcher()
    assert watch is not None  # CPython
    d = {"a": 1}
    reader, tag = watch(d)
    assert reader.value == tag
    d["a"] = 1  # the same value: nothing changed
    assert reader.value == tag
    for change in (lambda: d.__setitem__("a", 2), lambda: d.__setitem__("b", 1), lambda: d.pop("b"), d.clear):
        before = reader.value
        change()
        assert reader.value != before


@pytest.mark.parametrize("isolation", ["auto", "in-process"])
def test_a_child_that_dies_before_the_candidate_runs_is_infra_not_a_verdict(isolation):
    """The run's processes are set up before any candidate code runs (the in-process child writes
    its nonce, the judge server starts, the candidate process says hello): failing before that is
    the sandbox's fault (here a resource limit it cannot set), never a failed answer."""
    from gcop_env.sandbox.process_backend import ProcessSandbox

    box = ProcessSandbox(pool_size=1, isolation=isolation)
    try:
        box.config["rlimits"]["RLIMIT_NOFILE"] = 1 << 40  # above any hard limit: setrlimit raises in the child
        outcome = box.run_pytest({"solution.py": GOOD, "test_solution.py": TESTS}, 10)
    finally:
        box.close()
    assert outcome.infra_error is not None and "before any candidate code ran" in outcome.infra_error, outcome
    assert "ValueError" in outcome.infra_error or "OSError" in outcome.infra_error, outcome.infra_error
    assert not outcome.all_passed and outcome.collected == 0


def test_runner_is_an_option_of_both_backends():
    from gcop_env.sandbox.process_backend import ProcessSandbox

    box = ProcessSandbox(pool_size=1, runner="pytest")
    try:
        outcome = box.run_pytest({"solution.py": GOOD, "test_solution.py": TESTS}, 10)
        assert outcome.all_passed and outcome.runner == "pytest"
    finally:
        box.close()
    with pytest.raises(ValueError, match="runner must be one of auto, pytest"):
        ProcessSandbox(runner="fast")
