"""Checks of configured numbers and options, with errors that give the valid range.

A NaN weight passes ``value < 0`` and turns every reward into NaN; a threshold of 2 rejects every
strategy after paying for it. So every number a user configures (env keyword, config field, CLI
flag) goes through one of these before any work starts. ``bool`` is not accepted as a number:
``beta=True`` is a mistake, not 1.0.
"""

from __future__ import annotations

import math
import numbers
from typing import Any


def describe_range(lo: float | None, hi: float | None, lo_open: bool = False, hi_open: bool = False) -> str:
    """A range as the error messages (and the docs' option tables) say it: ``in (0, 1]``, ``>= 1``, ``finite``."""
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo:g}"
    if hi is not None:
        return f"{'<' if hi_open else '<='} {hi:g}"
    return "finite"


def is_number(value: Any) -> bool:
    """A real number that is not a bool (numpy scalars included)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_number(name: str, value: Any, lo: float | None = None, hi: float | None = None, *,
                 lo_open: bool = False, hi_open: bool = False) -> float:
    """``value`` as a float if it is a finite number in the range; else a ValueError saying the range."""
    valid = describe_range(lo, hi, lo_open, hi_open)
    if not is_number(value):
        raise ValueError(f"{name} must be a number {valid}, got {value!r} ({type(value).__name__})")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number {valid}, got {value!r}")
    if (lo is not None and (number <= lo if lo_open else number < lo)) or \
            (hi is not None and (number >= hi if hi_open else number > hi)):
        raise ValueError(f"{name} must be {valid}, got {value!r}")
    return number


def check_int(name: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    """``value`` as an int if it is an integer (not a bool, not 1.7) in [lo, hi]; else a ValueError."""
    valid = describe_range(lo, hi, False, False)
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise ValueError(f"{name} must be an integer {valid}, got {value!r} ({type(value).__name__})")
    number = int(value)
    if (lo is not None and number < lo) or (hi is not None and number > hi):
        raise ValueError(f"{name} must be an integer {valid}, got {value!r}")
    return number


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r} ({type(value).__name__})")
    return value
