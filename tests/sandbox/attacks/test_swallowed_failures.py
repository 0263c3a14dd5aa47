"""Family 4, failures swallowed on their way to the verdict: in the plain runner a test's exception
passes through context managers (pytest's warnings and logging capture, ``contextlib``) before
anything records it, and their ``__exit__`` can be made to swallow it; nothing like pytest's
``CallInfo`` catches it first. Also: exceptions raised by the solution that ask the runner for
another outcome than failed (skip, xfail, exit, interrupt), which must never read as a pass.

Each attack faces ``answer() == 42`` (and ``isinstance(answer(), int)``) with a wrong answer (41).
"""

from __future__ import annotations

import pytest

from _redteam import Attack, check_attack, ids
from _sandbox_support import runner, sandbox  # noqa: F401  (fixtures)

_WRONG = "\ndef answer():\n    return 41\n"

ATTACKS = [
    Attack(
        "warnings_catch_warnings_exit_swallows",
        "patches warnings.catch_warnings.__exit__ to return True: the plain runner runs each test inside it",
        '''
import warnings
_exit = warnings.catch_warnings.__exit__
def _swallow(self, *exc):
    _exit(self, *exc)
    return True
warnings.catch_warnings.__exit__ = _swallow
''' + _WRONG,
    ),
    Attack(
        "warnings_catch_warnings_class_replaced",
        "rebinds warnings.catch_warnings to a subclass whose __exit__ swallows (looked up at each test)",
        '''
import warnings
class _Quiet(warnings.catch_warnings):
    def __exit__(self, *exc):
        super().__exit__(*exc)
        return True
warnings.catch_warnings = _Quiet
''' + _WRONG,
    ),
    Attack(
        "contextlib_generator_manager_exit_swallows",
        "patches contextlib._GeneratorContextManager.__exit__ (pytest's catch_warnings_for_item is one) to swallow",
        '''
import contextlib
_exit = contextlib._GeneratorContextManager.__exit__
def _swallow(self, typ, value, tb):
    try:
        _exit(self, typ, value, tb)
    except BaseException:
        pass
    return True
contextlib._GeneratorContextManager.__exit__ = _swallow
''' + _WRONG,
    ),
    Attack(
        "pytest_logging_capture_exit_swallows",
        "patches the __exit__ of pytest's catching_logs (module reached by a computed name) to swallow",
        '''
import sys
_logging = sys.modules.get("_py" + "test.logging")
if _logging is None:
    _logging = __import__("_py" + "test.logging", fromlist=["x"])
_exit = _logging.catching_logs.__exit__
def _swallow(self, *exc):
    _exit(self, *exc)
    return True
_logging.catching_logs.__exit__ = _swallow
''' + _WRONG,
    ),
    Attack(
        "skip_raised_inside_the_solution",
        "raises unittest.SkipTest from inside the call (a skipped test is not a passed one)",
        "import unittest\ndef answer():\n    raise unittest.SkipTest('not today')\n",
    ),
    Attack(
        "pytest_xfail_inside_the_solution",
        "calls pytest.xfail() from inside the call",
        "import pytest\ndef answer():\n    pytest.xfail('known bug')\n",
    ),
    Attack(
        "keyboard_interrupt_inside_the_solution",
        "raises KeyboardInterrupt from the call (ends the session early)",
        "def answer():\n    raise KeyboardInterrupt\n",
    ),
    Attack(
        "pytest_exit_zero_inside_the_solution",
        "calls pytest.exit(returncode=0) from the call",
        "import pytest\ndef answer():\n    pytest.exit('all good', returncode=0)\n",
    ),
    Attack(
        "system_exit_zero_inside_the_solution",
        "raises SystemExit(0) from the call",
        "import sys\ndef answer():\n    sys.exit(0)\n",
    ),
    Attack(
        "assertion_error_shadowed_by_star_import",
        "exports a class named AssertionError (a SkipTest) through __all__, so the tests' rewritten asserts "
        "raise a skip instead of a failure",
        '''
import unittest
__all__ = ["answer", "AssertionError"]
class AssertionError(unittest.SkipTest):
    pass
''' + _WRONG,
    ),
    Attack(
        "exception_class_lies_to_be_a_skip",
        "raises an exception whose __class__ (set through locals()) claims to be pytest's Skipped",
        '''
import sys
_outcomes = sys.modules.get("_py" + "test.outcomes") or __import__("_py" + "test.outcomes", fromlist=["x"])
class Problem(Exception):
    locals()["__cl" + "ass__"] = property(lambda self: _outcomes.Skipped)
def answer():
    raise Problem("41")
''',
    ),
    Attack(
        "solution_assertion_error_subclass",
        "raises its own AssertionError subclass with a message that reads like a pass",
        '''
class Passed(AssertionError):
    def __str__(self):
        return "passed"
def answer():
    raise Passed()
''',
    ),
]


@pytest.mark.parametrize("attack", ATTACKS, ids=ids(ATTACKS))
def test_wrong_solution_is_never_pass(request, sandbox, runner, attack):
    check_attack(request, sandbox, runner, attack)
