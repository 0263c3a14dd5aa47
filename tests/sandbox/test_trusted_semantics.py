"""Trusted isolation keeps what tests mean: what crosses between the judge and the candidate, and how.

Each case is a solution and a test file that must pass (a right answer) under trusted isolation
in both backends, with the verdict pytest gives in one process (in-process/pytest, the reference);
a wrong variant must fail alike. The cases cover what the tests of coding datasets do with a
solution: call it with data and compare results, catch its exceptions, read what it prints, hand
it callbacks, use its classes, objects, generators and context managers, compare its objects, and
pass numpy and pandas values both ways.
"""

from __future__ import annotations

import textwrap

import pytest

from _sandbox_support import BACKENDS, make_backend, use_mode


@pytest.fixture(scope="module", params=BACKENDS)
def box(request):
    sandbox = make_backend(request.param, pool_size=1)
    yield sandbox
    sandbox.close()


def _run(box, solution, tests, mode="trusted/plain", timeout=20.0):
    with use_mode(box, mode):
        return box.run_pytest({"solution.py": textwrap.dedent(solution), "test_solution.py": textwrap.dedent(tests)}, timeout)


def _check(box, solution, tests, wrong=None):
    """The right solution passes under trusted isolation, as under pytest in one process; ``wrong``
    (another solution) fails in both."""
    trusted = _run(box, solution, tests)
    assert trusted.isolation == "trusted", (trusted.isolation, trusted.isolation_note)
    assert trusted.all_passed, (trusted.output[-3000:], [t.message for t in trusted.tests if t.outcome != "passed"])
    reference = _run(box, solution, tests, "in-process/pytest")
    assert reference.all_passed, reference.output[-3000:]
    assert [t.nodeid for t in trusted.tests] == [t.nodeid for t in reference.tests]
    if wrong is not None:
        bad = _run(box, wrong, tests)
        assert bad.isolation == "trusted" and not bad.all_passed and bad.infra_error is None, bad
        assert not _run(box, wrong, tests, "in-process/pytest").all_passed
    return trusted


CASES = {
    "data_in_and_out": ("""
        def describe(xs, scale=1.0, **extra):
            return {"n": len(xs), "total": sum(xs) * scale, "pairs": [(x, str(x)) for x in xs], "big": 2 ** 100,
                    "set": set(xs), "frozen": frozenset(xs), "bytes": bytes(xs), "none": None, "c": complex(1, 2),
                    "extra": extra, "nested": [[[]]], "t": (1, (2, (3,)))}
        """, """
        from solution import describe

        def test_describe():
            got = describe([1, 2, 3], scale=2.0, tag="x")
            assert got == {"n": 3, "total": 12.0, "pairs": [(1, "1"), (2, "2"), (3, "3")], "big": 2 ** 100,
                           "set": {1, 2, 3}, "frozen": frozenset({1, 2, 3}), "bytes": b"\\x01\\x02\\x03", "none": None,
                           "c": 1 + 2j, "extra": {"tag": "x"}, "nested": [[[]]], "t": (1, (2, (3,)))}
            assert type(got["pairs"][0]) is tuple and type(got["frozen"]) is frozenset
        """, "def describe(xs, scale=1.0, **extra):\n    return {}\n"),
    "arguments_changed_in_place": ("""
        def sort_in_place(items):
            items.sort()

        def rotate(matrix):
            matrix[:] = [list(row) for row in zip(*matrix[::-1])]

        def fill(d, s, b):
            d["x"] = 1
            s.add(2)
            b[0] = 7
            return d
        """, """
        from solution import *

        def test_sort():
            data = [3, 1, 2]
            assert sort_in_place(data) is None
            assert data == [1, 2, 3]

        def test_rotate():
            m = [[1, 2], [3, 4]]
            rotate(m)
            assert m == [[3, 1], [4, 2]]

        def test_fill_returns_the_same_dict():
            d, s, b = {}, set(), bytearray(b"abc")
            assert fill(d, s, b) is d
            assert (d, s, b) == ({"x": 1}, {2}, bytearray(b"\\x07bc"))
        """, "def sort_in_place(items):\n    return sorted(items)\n\ndef rotate(m):\n    pass\n\ndef fill(d, s, b):\n    return {}\n"),
    "exceptions": ("""
        class InsufficientFunds(ValueError):
            def __init__(self, needed):
                super().__init__("need %d more" % needed)
                self.needed = needed

        def withdraw(balance, amount):
            if amount < 0:
                raise ValueError("negative amount")
            if amount > balance:
                raise InsufficientFunds(amount - balance)
            return balance - amount

        def lookup(d, key):
            return d[key]
        """, """
        import pytest
        from solution import withdraw, lookup, InsufficientFunds

        def test_builtin():
            with pytest.raises(ValueError, match="negative"):
                withdraw(10, -1)

        def test_own_class_and_its_base():
            with pytest.raises(InsufficientFunds) as caught:
                withdraw(10, 15)
            assert caught.value.needed == 5 and str(caught.value) == "need 5 more"
            with pytest.raises(ValueError):
                withdraw(1, 2)
            assert isinstance(caught.value, ValueError)

        def test_key_error():
            with pytest.raises(KeyError):
                lookup({}, "x")
            try:
                lookup({"a": 1}, "b")
            except KeyError as exc:
                assert exc.args == ("b",)
        """, "def withdraw(b, a):\n    return b - a\n\nclass InsufficientFunds(ValueError):\n    pass\n\ndef lookup(d, k):\n    return None\n"),
    "printed_output": ("""
        import sys

        def shout(word):
            print(word.upper())
            print("warned", file=sys.stderr)
            return len(word)
        """, """
        import io
        from contextlib import redirect_stdout
        from solution import shout

        def test_capsys(capsys):
            assert shout("hi") == 2
            out, err = capsys.readouterr()
            assert out == "HI\\n" and err == "warned\\n"

        def test_capfd(capfd):
            shout("yo")
            assert capfd.readouterr().out == "YO\\n"

        def test_redirect():
            buffer = io.StringIO()
            with redirect_stdout(buffer):
                shout("abc")
            assert buffer.getvalue() == "ABC\\n"
        """, "def shout(word):\n    print(word)\n    return len(word)\n"),
    "callbacks": ("""
        def apply_all(items, func, key=None):
            return sorted((func(x) for x in items), key=key)

        def visit(tree, visitor):
            visitor(tree["value"])
            for child in tree.get("children", []):
                visit(child, visitor)
        """, """
        from solution import apply_all, visit

        def test_lambda_and_key():
            assert apply_all([3, -1, 2], lambda x: x * 10, key=abs) == [-10, 20, 30]
            assert apply_all(["b", "A", "c"], str.lower) == ["a", "b", "c"]

        def test_visitor_collects_into_the_tests_list():
            seen = []
            visit({"value": 1, "children": [{"value": 2}, {"value": 3, "children": [{"value": 4}]}]}, seen.append)
            assert seen == [1, 2, 3, 4]
        """, "def apply_all(items, func, key=None):\n    return list(items)\n\ndef visit(tree, visitor):\n    pass\n"),
    "classes_objects_and_state": ("""
        class Stack:
            LIMIT = 100

            def __init__(self):
                self.items = []

            def push(self, x):
                self.items.append(x)
                return self

            def pop(self):
                return self.items.pop()

            def __len__(self):
                return len(self.items)

            @property
            def top(self):
                return self.items[-1] if self.items else None

            @staticmethod
            def describe():
                return "stack"

        class ListNode:
            def __init__(self, val=0, next=None):
                self.val = val
                self.next = next

        def build(values):
            head = None
            for v in reversed(values):
                head = ListNode(v, head)
            return head

        def reverse(head):
            prev = None
            while head:
                head.next, prev, head = prev, head, head.next
            return prev
        """, """
        from solution import *

        def to_list(node):
            out = []
            while node:
                out.append(node.val)
                node = node.next
            return out

        def test_stack():
            s = Stack()
            assert s.push(1).push(2) is s
            assert len(s) == 2 and s.top == 2 and s.pop() == 2 and len(s) == 1
            assert not Stack() and s
            assert Stack.LIMIT == 100 and Stack.describe() == "stack" and isinstance(s, Stack)
            assert type(s).__name__ == "Stack"

        def test_linked_list():
            assert to_list(reverse(build([1, 2, 3, 4]))) == [4, 3, 2, 1]
            assert reverse(None) is None
            node = ListNode(5)
            node.val = 6
            assert node.val == 6 and node.next is None
        """, "class Stack:\n    LIMIT = 1\n    def push(self, x):\n        return self\n    def pop(self):\n        return None\n"
             "    def __len__(self):\n        return 0\n    top = None\n    @staticmethod\n    def describe():\n        return ''\n"
             "class ListNode:\n    def __init__(self, val=0, next=None):\n        self.val = val\n        self.next = next\n"
             "def build(values):\n    return None\ndef reverse(head):\n    return head\n"),
    "equality_of_the_solutions_objects": ("""
        class Point:
            def __init__(self, x, y):
                self.x, self.y = x, y

            def __eq__(self, other):
                return self.__dict__ == other.__dict__

        class Guarded:
            def __init__(self, v):
                self.v = v

            def __eq__(self, other):
                if not isinstance(other, self.__class__):
                    return NotImplemented
                return self.__dict__ == other.__dict__

            def __ne__(self, other):
                return not self.__eq__(other)

            def __hash__(self):
                return hash(self.v)

        class Plain:
            pass

        def midpoint(a, b):
            return Point((a.x + b.x) / 2, (a.y + b.y) / 2)

        def make(v):
            return Guarded(v)
        """, """
        from solution import *

        def test_dict_equality():
            assert midpoint(Point(0, 0), Point(2, 4)) == Point(1.0, 2.0)
            assert midpoint(Point(0, 0), Point(2, 4)) != Point(1.0, 3.0)

        def test_guarded_and_ne():
            assert make(3) == Guarded(3) and make(3) != Guarded(4) and not (make(3) != Guarded(3))
            assert len({make(1), Guarded(1), make(2)}) == 2

        def test_identity_for_a_class_without_eq():
            p = Plain()
            assert p == p and Plain() != Plain()
        """, "class Point:\n    def __init__(self, x, y):\n        self.x, self.y = x, y\n    def __eq__(self, o):\n"
             "        return self.__dict__ == o.__dict__\nclass Guarded(Point):\n    def __init__(self, v):\n        self.v = v\n"
             "    def __hash__(self):\n        return 0\nclass Plain:\n    pass\ndef midpoint(a, b):\n    return Point(0, 0)\n"
             "def make(v):\n    return Guarded(0)\n"),
    "generators_iterators_and_context_managers": ("""
        import contextlib

        def count_up(n):
            for i in range(n):
                yield i * i

        class Countdown:
            def __init__(self, n):
                self.n = n

            def __iter__(self):
                return iter(range(self.n, 0, -1))

        log = []

        @contextlib.contextmanager
        def opened(name):
            log.append("open " + name)
            yield name.upper()
            log.append("close " + name)

        def get_log():
            return list(log)
        """, """
        from solution import *

        def test_generator():
            g = count_up(4)
            assert next(g) == 0 and next(g) == 1
            assert list(g) == [4, 9]
            assert list(count_up(600))[-1] == 599 ** 2
            assert 9 in count_up(5) and 7 not in count_up(5)

        def test_iterable_object():
            assert list(Countdown(3)) == [3, 2, 1] and sum(Countdown(4)) == 10

        def test_context_manager():
            with opened("f") as name:
                assert name == "F"
            assert get_log() == ["open f", "close f"]
        """, "def count_up(n):\n    return iter([])\nclass Countdown:\n    def __init__(self, n):\n        pass\n"
             "    def __iter__(self):\n        return iter([])\nimport contextlib\n@contextlib.contextmanager\n"
             "def opened(name):\n    yield ''\ndef get_log():\n    return []\n"),
    "value_classes_enums_namedtuples_dataclasses": ("""
        import collections
        import dataclasses
        import enum

        Pair = collections.namedtuple("Pair", "left right")

        class Color(enum.Enum):
            RED = 1
            BLUE = 2

        class Level(enum.IntEnum):
            LOW = 1
            HIGH = 2

        @dataclasses.dataclass
        class Item:
            name: str
            qty: int = 0

        class Meters(float):
            def describe(self):
                return "%.1f m" % self

        def split(xs):
            return Pair(xs[0], xs[-1])

        def paint(c):
            return Color.BLUE if c is Color.RED else Color.RED

        def order(n):
            return Item("apple", n)

        def walk(km):
            return Meters(km * 1000)
        """, """
        from solution import *

        def test_namedtuple():
            p = split([1, 2, 3])
            assert p == (1, 3) and p.left == 1 and p.right == 3 and p == Pair(1, 3)

        def test_enums():
            assert paint(Color.RED) is Color.BLUE and paint(Color.BLUE) == Color.RED
            assert Level.HIGH == 2 and Level.LOW < Level.HIGH and list(Color) == [Color.RED, Color.BLUE]

        def test_dataclass():
            assert order(3) == Item("apple", 3) and order(3).qty == 3 and order(3) != Item("apple", 4)

        def test_float_subclass():
            m = walk(1.5)
            assert m == 1500.0 and m + 1 == 1501.0 and isinstance(m, float) and m.describe() == "1500.0 m"
        """, "import collections\nPair = collections.namedtuple('Pair', 'left right')\nimport enum\n"
             "class Color(enum.Enum):\n    RED = 1\n    BLUE = 2\nclass Level(enum.IntEnum):\n    LOW = 1\n    HIGH = 2\n"
             "import dataclasses\n@dataclasses.dataclass\nclass Item:\n    name: str\n    qty: int = 0\n"
             "class Meters(float):\n    pass\ndef split(xs):\n    return Pair(0, 0)\ndef paint(c):\n    return c\n"
             "def order(n):\n    return Item('pear')\ndef walk(km):\n    return Meters(0)\n"),
    "module_level_names_and_helpers": ("""
        import math
        from typing import List

        MOD = 10 ** 9 + 7
        TABLE = {"a": [1, 2]}

        def helper(x):
            return x * 2

        def solve(xs: List[int]) -> int:
            return sum(helper(x) for x in xs) % MOD
        """, """
        import solution as sol
        from solution import *

        def test_names():
            assert solve([1, 2]) == 6 and MOD == 10 ** 9 + 7 and TABLE == {"a": [1, 2]}
            assert math.sqrt(16) == 4 and sol.helper(4) == 8 and sol.solve.__name__ == "solve"
        """, "import math\nMOD = 1\nTABLE = {}\ndef helper(x):\n    return x\ndef solve(xs):\n    return 0\n"),
    "a_test_lends_its_objects": ("""
        def write_report(rows, out):
            for row in rows:
                out.write("%s=%s\\n" % row)

        def total(obj):
            return obj.value + obj.bonus()
        """, """
        import io
        from solution import write_report, total

        class Account:
            def __init__(self, value):
                self.value = value

            def bonus(self):
                return 5

        def test_writes_into_the_tests_buffer():
            buffer = io.StringIO()
            write_report([("a", 1), ("b", 2)], buffer)
            assert buffer.getvalue() == "a=1\\nb=2\\n"

        def test_reads_the_tests_object():
            assert total(Account(10)) == 15
        """, "def write_report(rows, out):\n    pass\ndef total(obj):\n    return 0\n"),
    "numpy_and_pandas": ("""
        import numpy as np
        import pandas as pd

        def normalize(a):
            a = np.asarray(a, dtype=float)
            return (a - a.mean()) / a.std()

        def scale_in_place(a):
            a *= 2

        def summarize(df):
            out = df.groupby("k", as_index=False)["v"].sum()
            out["share"] = out["v"] / out["v"].sum()
            return out

        def first(s):
            return s.iloc[0], s.dtype
        """, """
        import numpy as np
        import pandas as pd
        from solution import *

        def test_numpy():
            got = normalize([1, 2, 3])
            assert isinstance(got, np.ndarray) and got.dtype == np.float64
            np.testing.assert_allclose(got, [-1.2247449, 0.0, 1.2247449], rtol=1e-6)
            a = np.arange(4)
            scale_in_place(a)
            assert a.tolist() == [0, 2, 4, 6]

        def test_pandas():
            df = pd.DataFrame({"k": ["a", "b", "a"], "v": [1, 2, 3]})
            expected = pd.DataFrame({"k": ["a", "b"], "v": [4, 2], "share": [4 / 6, 2 / 6]})
            pd.testing.assert_frame_equal(summarize(df), expected)
            value, dtype = first(pd.Series([7, 8], index=["x", "y"]))
            assert value == 7 and dtype == np.dtype("int64")
        """, "import numpy as np\ndef normalize(a):\n    return np.asarray(a)\ndef scale_in_place(a):\n    pass\n"
             "def summarize(df):\n    return df\ndef first(s):\n    return None, None\n"),
    "deep_structures_and_recursion": ("""
        def nest(n):
            out = []
            for _ in range(n):
                out = [out]
            return out

        def depth(x):
            d = 0
            while isinstance(x, list) and x:
                x, d = x[0], d + 1
            return d

        def fib(n, memo={}):
            if n < 2:
                return n
            if n not in memo:
                memo[n] = fib(n - 1) + fib(n - 2)
            return memo[n]
        """, """
        from solution import *

        def test_nested_both_ways():
            assert depth(nest(300)) == 300

        def test_recursion():
            assert fib(500) == 139423224561697880139724382870407283950070256587697307264108962948325571622863290691557658876222521294125
        """, "def nest(n):\n    return []\ndef depth(x):\n    return 0\ndef fib(n, memo={}):\n    return 0\n"),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_case_passes_as_in_one_process(box, case):
    solution, tests, wrong = CASES[case]
    _check(box, solution, tests, wrong)


def test_a_test_file_that_needs_one_process_runs_in_process_and_says_why(box):
    outcome = _run(box, "def answer():\n    return 42\n", """
        from solution import answer

        def test_patched(monkeypatch):
            monkeypatch.setattr("builtins.input", lambda: "x")
            assert answer() == 42
        """)
    assert outcome.all_passed and outcome.isolation == "in-process", outcome
    assert "monkeypatch" in outcome.isolation_note, outcome.isolation_note
    forced = _run(box, "def answer():\n    return 42\n", "from solution import answer\n\ndef test_a():\n    assert answer() == 42\n",
                  "in-process/plain")
    assert forced.all_passed and forced.isolation == "in-process" and forced.isolation_note == "asked for"


def test_the_star_import_brings_no_builtins_tests_or_hooks(box):
    """A solution's ``abs``, ``test_*`` or ``pytestmark`` do not take the tests' names."""
    outcome = _run(box, """
        import pytest

        def abs(x):
            return 0

        def test_planted():
            assert False

        pytestmark = pytest.mark.skip

        def half(x):
            return x / 2
        """, """
        from solution import *

        def test_half():
            assert abs(half(3) - 1.5) < 1e-9
            assert abs(half(2) - 7) == 6
        """)
    assert outcome.isolation == "trusted" and outcome.all_passed and outcome.collected == 1, outcome
    wrong = _run(box, "def abs(x):\n    return 0\n\ndef half(x):\n    return 0\n", """
        from solution import *

        def test_half():
            assert abs(half(3) - 1.5) < 1e-9
        """)
    assert not wrong.all_passed


def test_pytest_current_test_reaches_the_solution(box):
    outcome = _run(box, "import os\n\ndef where():\n    return os.environ['PYTEST_CURRENT_TEST']\n", """
        from solution import where

        def test_env():
            assert where() == "test_solution.py::test_env (call)"
        """)
    assert outcome.isolation == "trusted" and outcome.all_passed, outcome.tests
