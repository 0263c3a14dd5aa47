"""The process-wide cap on requests in flight to all endpoints (``GCOP_MAX_CONCURRENCY``)."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

from gcop_env.utils.environ import env_limit

_global_lock = threading.Lock()
_global_cap: tuple[int | None, threading.BoundedSemaphore | None] | None = None


def set_max_concurrency(n: int | None) -> None:
    """Cap the requests in flight to all endpoints in this process (None: no cap).

    The default comes from ``GCOP_MAX_CONCURRENCY``. Requests already in flight keep their slot.
    """
    global _global_cap
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"max concurrency must be an int >= 1 or None, got {n!r}")
    with _global_lock:
        _global_cap = (n, threading.BoundedSemaphore(n) if n else None)


def max_concurrency() -> int | None:
    """The process-wide cap in force (reads ``GCOP_MAX_CONCURRENCY`` on first use)."""
    global _global_cap
    with _global_lock:
        if _global_cap is None:
            n = env_limit("GCOP_MAX_CONCURRENCY", what="requests in flight in this process", integer=True)
            _global_cap = (n, threading.BoundedSemaphore(n) if n else None)
        return _global_cap[0]


@contextmanager
def _global_slot() -> Iterator[None]:
    max_concurrency()
    semaphore = _global_cap[1] if _global_cap else None
    if semaphore is None:
        yield
        return
    with semaphore:
        yield


def reset() -> None:
    """Forget the cap (it is read again from the environment on next use)."""
    global _global_cap
    with _global_lock:
        _global_cap = None
