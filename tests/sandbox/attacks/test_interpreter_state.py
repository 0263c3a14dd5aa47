"""Interpreter state shared with the tests: the libraries a test asserts with (``math``, ``numpy``,
``unittest``, ``pytest`` itself), ``builtins``, ``sys.modules``, import hooks, and files a later
interpreter would read (``sitecustomize``, ``.pth``, ``conftest.py``, ``PYTHONPATH``). The monitor
watches pytest's own modules, ``builtins`` and a few ``sys.modules`` entries; everything else a test
imports is the candidate's to change, and a test that runs in the candidate's process uses what it
finds.
"""

from __future__ import annotations

import pytest

from _redteam import Attack, check_attack, ids
from _sandbox_support import runner, sandbox  # noqa: F401  (fixtures)

MATH_TESTS = '''import math
from solution import *


def test_area():
    assert math.isclose(area(2.0), 12.566, rel_tol=1e-3)
'''

NUMPY_TESTS = '''import numpy as np
from solution import *


def test_scale():
    np.testing.assert_allclose(scale([1, 2, 3], 2), [2, 4, 6])
    assert np.array_equal(scale([1], 3), np.array([3]))
'''

NUMPY_AFTER_TESTS = '''from solution import *
import numpy as np


def test_scale():
    assert np.allclose(scale([1, 2, 3], 2), [2, 4, 6])
'''

UNITTEST_TESTS = '''import unittest
from solution import *


class TestAnswer(unittest.TestCase):
    def test_answer(self):
        self.assertEqual(answer(), 42)

    def test_type(self):
        self.assertIsInstance(answer(), int)
'''

APPROX_AFTER_TESTS = '''from solution import *
import pytest


def test_area():
    assert area(2.0) == pytest.approx(12.566, rel=1e-3)
'''

# The real pytest module, sys.modules (by a computed name), and what a fake pytest.approx returns:
# an object equal to any number.
_FAKE_PYTEST = '''
import sys, types
_modules = getattr(sys, "mod" + "ules")
_real = _modules["pytest"]
class _Near:
    def __eq__(self, other):
        return isinstance(other, (int, float))
    __hash__ = object.__hash__
'''

ATTACKS = [
    Attack(
        "math_isclose_patched",
        "replaces math.isclose (the tests' own import of math sees the same module) with one that is always true",
        "import math\nmath.isclose = lambda *args, **kwargs: True\ndef area(radius):\n    return 1.0\n",
        tests=MATH_TESTS,
    ),
    Attack(
        "numpy_assertions_patched",
        "replaces numpy.testing.assert_allclose and numpy.array_equal with ones that never object",
        '''
import numpy
numpy.testing.assert_allclose = lambda *args, **kwargs: None
numpy.array_equal = lambda *args, **kwargs: True
def scale(values, factor):
    return numpy.zeros(len(values))
''',
        tests=NUMPY_TESTS,
    ),
    Attack(
        "unittest_assert_equal_patched",
        "replaces unittest.TestCase.assertEqual and assertIsInstance for a TestCase-style test file",
        '''
import unittest
unittest.TestCase.assertEqual = lambda self, *args, **kwargs: None
unittest.TestCase.assertIsInstance = lambda self, *args, **kwargs: None
def answer():
    return "41"
''',
        tests=UNITTEST_TESTS,
    ),
    Attack(
        "fake_module_planted_in_sys_modules",
        "puts a fake numpy (allclose always true) in sys.modules (reached by a computed name) before the tests "
        "import it",
        '''
import sys, types
_fake = types.ModuleType("numpy")
_fake.allclose = lambda *args, **kwargs: True
getattr(sys, "mod" + "ules")["numpy"] = _fake
def scale(values, factor):
    return [0 for _ in values]
''',
        tests=NUMPY_AFTER_TESTS,
    ),
    Attack(
        "import_hook_from_another_file_name",
        "a meta-path finder (compiled under another file name) that serves a fake numpy to the tests' later import",
        '''
import sys
_ns = {"sys": sys}
exec(compile("""
import importlib.abc, importlib.util, types
class Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name == "numpy" else None
    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.allclose = lambda *args, **kwargs: True
        return module
    def exec_module(self, module):
        pass
""", "<library>", "exec"), _ns)
getattr(sys, "meta" + "_path").insert(0, _ns["Finder"]())
def scale(values, factor):
    return [0 for _ in values]
''',
        tests=NUMPY_AFTER_TESTS,
    ),
    Attack(
        "pytest_swapped_and_restored_by_the_import",
        "puts a fake pytest (approx equals any number) in sys.modules; the tests' `import pytest` reads its "
        "__spec__, which puts the real module back, so the monitor's checks find sys.modules as it was",
        _FAKE_PYTEST + '''
class _FakePytest(types.ModuleType):
    @property
    def __spec__(self):
        _modules["pytest"] = _real
        return _real.__spec__
    def __getattr__(self, name):
        return getattr(_real, name)
_fake = _FakePytest("pytest")
_fake.approx = lambda *args, **kwargs: _Near()
_modules["pytest"] = _fake
def area(radius):
    return 1.0
''',
        tests=APPROX_AFTER_TESTS,
    ),
    Attack(
        "pytest_swapped_in_sys_modules",
        "puts a fake pytest in sys.modules for good (the monitor compares that entry)",
        _FAKE_PYTEST + '''
_fake = types.ModuleType("pytest")
_fake.__dict__.update(vars(_real))
_fake.approx = lambda *args, **kwargs: _Near()
_modules["pytest"] = _fake
def area(radius):
    return 1.0
''',
        tests=APPROX_AFTER_TESTS,
    ),
    Attack(
        "assertion_rewriting_helpers_patched",
        "patches pytest's assertion-rewriting helpers and the rewriting hook's exec_module (module by a computed "
        "name): the test file is rewritten before the solution is imported, and a failed assert raises anyway",
        '''
import sys
_name = "_py" + "test.assertion.rewrite"
_rewrite = sys.modules.get(_name) or __import__(_name, fromlist=["x"])
_rewrite._call_reprcompare = lambda *args: True
_rewrite._format_explanation = lambda explanation: ""
_rewrite.AssertionRewritingHook.exec_module = lambda self, module: None
def answer():
    return 41
''',
    ),
    Attack(
        "builtins_patched_by_a_computed_name",
        "replaces builtins.isinstance (module and name computed) so that a float passes for an int, and returns 42.0",
        '''
_builtins = __import__("built" + "ins")
_real = _builtins.isinstance
def _lying(obj, kind):
    return True if type(obj) is float else _real(obj, kind)
setattr(_builtins, "isin" + "stance", _lying)
def answer():
    return 42.5
''',
    ),
    Attack(
        "plants_files_for_a_later_interpreter",
        "writes sitecustomize.py, usercustomize.py, a .pth file, conftest.py and pytest.ini wherever it may "
        "(work dir and its parent, HOME, the user site; /tmp in a container only) and sets PYTHONPATH and "
        "PYTHONSTARTUP: a judge started later must read none of them",
        '''
import os, site, sys
_HOOK = "import os; os.environ['GCOP_REDTEAM_HOOK'] = '1'\\n"
def _plant():
    home = os.path.expanduser("~")
    places = [os.getcwd(), os.path.dirname(os.getcwd()), home,
              os.path.join(home, ".local", "lib", "python%d.%d" % sys.version_info[:2], "site-packages")]
    if os.getppid() == 1:  # in a container (the fork server is its pid 1): its own /tmp. Never a host's
        places.append("/tmp")
    for place in places:
        try:
            os.makedirs(place, exist_ok=True)
        except OSError:
            continue
        for name, text in (("sitecustomize.py", _HOOK), ("usercustomize.py", _HOOK), ("zz_redteam.pth", _HOOK),
                           ("conf" + "test.py", _HOOK), ("pytest.ini", "[pytest]\\naddopts = -p no:terminal\\n")):
            try:
                with open(os.path.join(place, name), "w") as handle:
                    handle.write(text)
            except OSError:
                pass
    os.environ["PYTHONPATH"] = os.getcwd()
    os.environ["PYTHONSTARTUP"] = os.path.join(os.getcwd(), "sitecustomize.py")
_plant()
def answer():
    return 41
''',
    ),
]


@pytest.mark.parametrize("attack", ATTACKS, ids=ids(ATTACKS))
def test_wrong_solution_is_never_pass(request, sandbox, runner, attack):
    check_attack(request, sandbox, runner, attack)
