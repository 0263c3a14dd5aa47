"""Reading the environment variables the package reads, with one error style.

A setting read from the environment is checked like a flag: a malformed one (``GCOP_RPM=abc``,
``inf``, ``nan``, ``-1``, ``0.5``) is an :class:`EnvVarError` naming the variable, its value and what
it may be, which the ``gcop`` commands print as one line with exit status 2 before any work.
"""

from __future__ import annotations

import math
import os


class EnvVarError(ValueError):
    """An environment variable holds a value the package cannot use; the message names it."""


OFF = frozenset({"", "off", "none", "unlimited"})


def env_limit(name: str, *, what: str, integer: bool = False) -> float | int | None:
    """A limit from ``$name``: a finite number >= 1 (a whole one when ``integer``), or None for no limit
    (unset, empty, ``off``/``none``/``unlimited``, or ``0``, as the README says)."""
    raw = os.environ.get(name, "").strip()
    if raw.lower() in OFF:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise EnvVarError(f"{name}={raw!r} is not a number; set {what} (e.g. {name}=50), or 0 / off / unset "
                          f"for no limit") from None
    if value == 0:
        return None
    if not math.isfinite(value) or value < 1 or (integer and not value.is_integer()):
        kind = "a whole number" if integer else "a finite number"
        raise EnvVarError(f"{name}={raw!r} must be {kind} >= 1 ({what}), or 0 / off / unset for no limit")
    return int(value) if integer else value


def env_int(name: str, default: int, *, lo: int = 0) -> int:
    """A whole number >= ``lo`` from ``$name`` (``RANK``, set by ``torchrun`` / ``accelerate``), else ``default``."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < lo:
        raise EnvVarError(f"{name}={raw!r} must be a whole number >= {lo} (it is set by the launcher: torchrun, "
                          f"accelerate launch); unset it for a single process")
    return value


def env_dir(name: str) -> str | None:
    """A directory from ``$name`` (made if missing); None when unset. A file there is an :class:`EnvVarError`."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    path = os.path.expanduser(raw)
    if os.path.exists(path) and not os.path.isdir(path):
        raise EnvVarError(f"{name}={raw!r} is a file; point it at a directory (or unset it)")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise EnvVarError(f"{name}={raw!r} cannot be made a directory ({exc.strerror or exc}); point it at a "
                          f"writable directory (or unset it)") from None
    return raw
