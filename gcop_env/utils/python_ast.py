"""``ast.parse`` that is safe to call from several threads at once.

CPython 3.11 keeps the AST constructor's recursion depth in interpreter-wide state, so two
threads parsing at the same time can fail with ``SystemError: AST constructor recursion depth
mismatch`` (python/cpython#106905, fixed in 3.12+). Validations run on threads (vector envs,
thread pools over a sandbox), so the validation path parses through this lock. A parse takes
well under a millisecond for a reply, so serialising them costs nothing measurable.
"""

from __future__ import annotations

import ast
import sys
import threading

_LOCK = threading.Lock() if sys.version_info < (3, 12) else None


def parse_python(source: str) -> ast.Module:
    """``ast.parse(source)``; raises SyntaxError / ValueError as it does."""
    if _LOCK is None:
        return ast.parse(source)
    with _LOCK:
        return ast.parse(source)


def parse_expression(source: str) -> ast.Expression:
    """``ast.parse(source, mode="eval")`` under the same lock; raises SyntaxError / ValueError as it does."""
    if _LOCK is None:
        return ast.parse(source, mode="eval")
    with _LOCK:
        return ast.parse(source, mode="eval")
