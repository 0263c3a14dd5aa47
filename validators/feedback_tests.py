"""Feedback tests for multi-turn episodes: what the guide may be shown, kept apart from the reward.

In a multi-turn episode the guide sees the validator's feedback on the core's failed answer and
revises its strategy. Feedback must never give the reward away, so on code tasks the tests are
split in two parts whose contents never meet:

* **KodCode** (:func:`split_pytest_file`): the row's pytest file has *test units*, its top-level
  ``test_*`` functions and ``Test*`` classes. A file with n ≥ 2 units is split: the first
  ``max(1, n // 3)`` units (in file order) are the *feedback* tests, the other units the *reward*
  tests. Both files keep the module-level code (imports, helpers, fixtures); each holds only its
  own units. A file with one unit cannot be split: it stays the reward file and the feedback on
  it says only how the run ended (failed / timed out / crashed), never which assertion failed.
* **HumanEval** (:func:`humaneval_examples`): the docstring's examples (``>>> f(x)`` followed by
  its output, or lines such as ``f(x) == y``, ``f(x) ➞ y``, ``f(x) => y``, ``f(x) = y``) become
  the feedback tests. They are part of the problem text every role already reads, so running
  them shows nothing new; the reward stays HumanEval's ``check()``, unchanged. A prompt without
  an example that parses gets the status-only feedback.

Nothing here runs code: it parses test files and docstrings (the sandbox runs the tests).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from gcop_env.utils.python_ast import parse_expression, parse_python

FEEDBACK_SHARE = 3  # a split file gives max(1, n // FEEDBACK_SHARE) of its n test units to feedback


@dataclass(frozen=True)
class TestSplit:
    """A pytest file cut into a feedback file and a reward file (module-level code in both)."""

    __test__ = False  # not a pytest test class

    feedback_source: str
    reward_source: str
    feedback_units: tuple[str, ...]
    reward_units: tuple[str, ...]


def _is_test_unit(node: ast.stmt) -> bool:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return node.name.startswith("test")
    return isinstance(node, ast.ClassDef) and node.name.startswith("Test")


def _segment(lines: list[str], node: ast.stmt) -> str:
    """The node's source lines, decorators included."""
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return "".join(lines[first - 1:node.end_lineno])


def unit_names(source: str) -> list[str]:
    """The names of the file's top-level test functions and test classes, in file order."""
    return [n.name for n in parse_python(source).body if _is_test_unit(n)]


def split_pytest_file(source: str) -> TestSplit | None:
    """The feedback/reward split of a pytest file, or None when it has fewer than two test units."""
    tree = parse_python(source)
    units = [node for node in tree.body if _is_test_unit(node)]
    if len(units) < 2:
        return None
    k = max(1, len(units) // FEEDBACK_SHARE)
    feedback_ids = {id(node) for node in units[:k]}
    lines = source.splitlines(keepends=True)
    feedback: list[str] = []
    reward: list[str] = []
    cursor = 1  # the next source line not yet assigned
    for node in tree.body:
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        between = "".join(lines[cursor - 1:first - 1])  # blank lines and comments before the node
        text = _segment(lines, node)
        cursor = node.end_lineno + 1
        if not _is_test_unit(node):
            feedback.append(between + text)
            reward.append(between + text)
        elif id(node) in feedback_ids:
            feedback.append(between + text)
        else:
            reward.append(between + text)
    return TestSplit(feedback_source=_join(feedback), reward_source=_join(reward),
                     feedback_units=tuple(n.name for n in units[:k]), reward_units=tuple(n.name for n in units[k:]))


def _join(parts: list[str]) -> str:
    text = "".join(p if p.endswith("\n") else p + "\n" for p in parts)
    return text


# ----------------------------------------------------------------------------- HumanEval examples


@dataclass(frozen=True)
class Example:
    """One example of a docstring: the call and the value it should return (both Python source)."""

    call: str
    expected: str


_SEPARATORS = ("==>", "➞", "=>", "==", "->", "=")
_COMMENT_ARROW = re.compile(r"#\s*(?:=>|->|returns?:?)\s*")


def _literal(text: str) -> str | None:
    """``text`` when it is a Python literal (the expected value of an example), else None."""
    text = text.strip().rstrip(".,;")
    if not text:
        return None
    try:
        ast.literal_eval(parse_expression(text).body)  # parsed under the lock: ast is not thread-safe on 3.11
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    return text


def _call_of(text: str, entry_point: str) -> str | None:
    """``text`` when it is exactly one call of ``entry_point`` with literal arguments, else None."""
    text = text.strip()
    try:
        node = parse_expression(text).body
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == entry_point):
        return None
    try:
        for arg in node.args:
            ast.literal_eval(arg)
        for keyword in node.keywords:
            if keyword.arg is None:
                return None
            ast.literal_eval(keyword.value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    return text


def _docstring_lines(prompt: str, entry_point: str) -> list[str]:
    """The lines of the entry point's docstring (the whole prompt when it cannot be found)."""
    try:
        tree = parse_python(prompt + "\n    pass\n")
    except (SyntaxError, ValueError):
        return prompt.splitlines()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == entry_point:
            doc = ast.get_docstring(node, clean=False)
            return (doc or "").splitlines()
    return prompt.splitlines()


def humaneval_examples(prompt: str, entry_point: str) -> list[Example]:
    """The examples of the entry point's docstring that parse (see the module doc), in order, unique."""
    lines = _docstring_lines(prompt, entry_point)
    found: list[Example] = []
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if line.startswith(">>>"):
            call = _call_of(line[3:], entry_point)
            expected_lines = []
            j = i + 1
            while j < len(lines) and lines[j].strip() and not lines[j].strip().startswith(">>>"):
                expected_lines.append(lines[j].strip())
                j += 1
            expected = _literal(" ".join(expected_lines)) if expected_lines else None
            if call and expected:
                found.append(Example(call, expected))
            i = j
            continue
        example = _inline_example(line, entry_point)
        if example is not None:
            found.append(example)
        i += 1
    unique: list[Example] = []
    for example in found:
        if example not in unique:
            unique.append(example)
    return unique


def _inline_example(line: str, entry_point: str) -> Example | None:
    """``f(x) == y``, ``f(x) ➞ y``, ``f(x) => y``, ``f(x) = y``, ``f(x) # returns y`` on one line."""
    line = line.removeprefix("assert ").strip()
    if not line.startswith(entry_point + "("):
        return None
    comment = _COMMENT_ARROW.search(line)
    if comment:
        call, expected = line[:comment.start()], line[comment.end():]
        call_src = _call_of(call, entry_point)
        expected_src = _literal(_strip_note(expected))
        return Example(call_src, expected_src) if call_src and expected_src else None
    for separator in _SEPARATORS:
        at = line.find(separator, len(entry_point) + 1)
        while at != -1:
            call_src = _call_of(line[:at], entry_point)
            if call_src:
                expected_src = _literal(_strip_note(line[at + len(separator):]))
                return Example(call_src, expected_src) if expected_src else None
            at = line.find(separator, at + 1)
    return None


def _strip_note(text: str) -> str:
    """An expected value without a trailing comment or parenthesised explanation: the longest
    prefix that is a Python literal (``'No' (the name should…)`` → ``'No'``, ``"#A@c"`` stays)."""
    text = text.strip()[:500]
    for end in range(len(text), 0, -1):
        if _literal(text[:end]) is None:
            continue
        rest = text[end:]
        if not rest.strip():
            return text[:end]
        # a note after the value, not the rest of an expression ("19 - 5 - 6 = 8") or a typo (""abc")
        if rest[0].isspace() and (rest.strip()[0] in "(#" or rest.strip()[0].isalpha()):
            return text[:end]
        return ""
    return ""


def humaneval_feedback_file(examples: list[Example]) -> str:
    """A pytest file with one test per example, run against HumanEval's ``solution.py``."""
    out = ["import math\n", "from solution import *  # the examples call the entry point by name\n", "\n"]
    for number, example in enumerate(examples, start=1):
        out.append(f"\ndef test_example_{number}():\n")
        out.append(f"    result = {example.call}\n")
        out.append(f"    expected = {example.expected}\n")
        out.append("    if isinstance(expected, float) or isinstance(result, float):\n")
        out.append("        assert isinstance(result, (int, float)) and math.isclose(result, expected, rel_tol=1e-6, "
                   "abs_tol=1e-9), f'{result!r} != {expected!r}'\n")
        out.append("    else:\n")
        out.append("        assert result == expected, f'{result!r} != {expected!r}'\n")
    return "".join(out)
