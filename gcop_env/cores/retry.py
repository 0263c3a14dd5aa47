"""Retries for transient API failures: backoff with jitter, honouring ``retry-after``.

Transient: 408, 409, 429, 5xx (529 "overloaded" included), timeouts, connection resets and
malformed response bodies. Anything else (a bad key, a bad request) fails at once. When retries
run out the caller gets a :class:`~gcop_env.cores.base.CoreError`, which the environment reports
as an infrastructure error, never as a wrong answer.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

from gcop_env.cores.base import CoreError

log = logging.getLogger(__name__)
T = TypeVar("T")

TRANSIENT_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 529})


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. ``max_attempts`` counts the first try."""

    max_attempts: int = 6
    initial_backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    multiplier: float = 2.0
    jitter: float = 0.25  # +/- fraction of the backoff, spreads out synchronised retries
    max_retry_after_s: float = 120.0  # never sleep longer than this on a server's say-so

    def backoff(self, attempt: int, rng: random.Random) -> float:
        base = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (attempt - 1))
        return max(0.0, base * (1.0 + rng.uniform(-self.jitter, self.jitter)))


def retry_after_seconds(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms`` or ``retry-after``), if any."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        if parsed is None:
            return None
        return max(0.0, parsed.timestamp() - time.time())


def is_transient(exc: BaseException) -> bool:
    """True for failures that may go away when tried again."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status in TRANSIENT_STATUS or status >= 500
    name = type(exc).__name__
    if name in {"APIConnectionError", "APITimeoutError", "APIResponseValidationError"}:
        return True
    if isinstance(exc, (TimeoutError, ConnectionError, json.JSONDecodeError)):  # undecodable body
        return True
    return False


def describe(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None)
    prefix = f"HTTP {status}: " if status else ""
    return f"{prefix}{type(exc).__name__}: {exc}"[:500]


def call_with_retries(fn: Callable[[], T], policy: RetryPolicy, *, what: str,
                      sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None) -> T:
    """Call ``fn`` until it succeeds, a permanent error occurs, or attempts run out."""
    rng = rng or random.Random()
    for attempt in range(1, policy.max_attempts + 1):
        try:
            return fn()
        except CoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified below, never swallowed
            transient = is_transient(exc)
            if not transient:
                raise CoreError(f"{what} failed (not retryable): {describe(exc)}",
                                transient=False, attempts=attempt, cause=describe(exc)) from exc
            if attempt == policy.max_attempts:
                raise CoreError(f"{what} failed after {attempt} attempts: {describe(exc)}",
                                transient=True, attempts=attempt, cause=describe(exc)) from exc
            wait = retry_after_seconds(exc)
            wait = policy.backoff(attempt, rng) if wait is None else min(wait, policy.max_retry_after_s)
            log.warning("%s: attempt %d/%d failed (%s); retrying in %.2fs",
                        what, attempt, policy.max_attempts, describe(exc), wait)
            sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover
