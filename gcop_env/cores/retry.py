"""Retries for transient API failures: backoff with jitter, honouring ``retry-after``.

Transient: 408, 409, 429, 5xx (529 "overloaded" included), timeouts, connection resets,
malformed response bodies and malformed replies (:class:`~gcop_env.cores.base.MalformedReply`: a 200
without content, or with a token count that is not a count). When retries run out the caller gets a
:class:`~gcop_env.cores.base.CoreError`, which the environment reports as an infrastructure error,
never as a wrong answer.

Permanent configuration errors fail at once with :class:`~gcop_env.cores.base.FatalCoreError`,
which stops the run instead of being logged per step: 404 (``not_found_error``: a retired or
misspelt model), 401 (``authentication_error``), 403 (``permission_error``) and 400/422
invalid-request errors, except those about one request's own size (a prompt over the context
window), which stay per-step errors. Other non-transient errors (e.g. 413) fail at once as a
plain :class:`CoreError`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from gcop_env.cores.base import CallInterrupted, CoreError, FatalCoreError, MalformedReply
from gcop_env.cores.limits import retry_after_from_headers
from gcop_env.utils.interrupt import sleep_unless_stopped
from gcop_env.utils.numbers import check_int, check_number

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

    def __post_init__(self) -> None:
        # Checked when made (gym.make's retry={...}, a config file): a policy of 0 attempts would fail
        # every step later with nothing to say why.
        check_int("RetryPolicy.max_attempts", self.max_attempts, lo=1)
        for name in ("initial_backoff_s", "max_backoff_s", "max_retry_after_s"):
            check_number(f"RetryPolicy.{name}", getattr(self, name), lo=0)
        check_number("RetryPolicy.multiplier", self.multiplier, lo=1)
        check_number("RetryPolicy.jitter", self.jitter, lo=0, hi=1)

    @classmethod
    def coerce(cls, value: "RetryPolicy | Mapping[str, Any] | None", what: str = "retry") -> "RetryPolicy | None":
        """``value`` as a policy: a :class:`RetryPolicy`, a dict of its fields (as ``spec.to_json()``
        writes it) or None. Anything else, or an unknown field, is an error naming ``what``."""
        if value is None or isinstance(value, cls):
            return value
        if not isinstance(value, Mapping):
            raise TypeError(f"{what} must be a RetryPolicy, a dict of its fields or None, got {value!r}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(value) - fields)
        if unknown:
            raise TypeError(f"{what} has unknown field(s) {unknown}; valid: {sorted(fields)}")
        return cls(**value)

    def backoff(self, attempt: int, rng: random.Random) -> float:
        base = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (attempt - 1))
        return max(0.0, base * (1.0 + rng.uniform(-self.jitter, self.jitter)))


def retry_after_seconds(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms`` or ``retry-after``), if any."""
    response = getattr(exc, "response", None)
    return retry_after_from_headers(getattr(response, "headers", None))


def is_transient(exc: BaseException) -> bool:
    """True for failures that may go away when tried again."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status in TRANSIENT_STATUS or status >= 500
    name = type(exc).__name__
    if name in {"APIConnectionError", "APITimeoutError", "APIResponseValidationError"}:
        return True
    if isinstance(exc, (TimeoutError, ConnectionError, json.JSONDecodeError, MalformedReply)):  # undecodable body
        return True
    return False


# 400s that are about one request, not the configuration: the same spec works for shorter inputs.
_PER_REQUEST_400 = re.compile(r"prompt is too long|context.{0,20}(length|window)|too many (input )?tokens|"
                              r"maximum context|input is too long|exceeds? the (model's )?(maximum|max)", re.IGNORECASE)

_KIND_BY_STATUS = {401: "authentication", 403: "permission", 404: "model_not_found", 400: "invalid_request",
                   422: "invalid_request"}

_HINTS = {
    "model_not_found": "the model (or the endpoint) does not exist: a retired or misspelt model name, or a base "
                       "URL without its /v1",
    "authentication": "the API key was refused; set ANTHROPIC_API_KEY / OPENAI_API_KEY (or the server's key)",
    "permission": "this key may not use this model or resource",
    "invalid_request": "the provider refuses this request configuration (e.g. a sampling parameter or "
                       "max_tokens the model does not accept)",
}


def provider_error(exc: BaseException) -> tuple[str | None, str]:
    """(error type, message) as the provider reported them, e.g. ("not_found_error", "model: x")."""
    body = getattr(exc, "body", None)
    kind, message = None, None
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            kind, message = err.get("type"), err.get("message")
        elif isinstance(err, str):
            message = err
    kind = kind or getattr(exc, "type", None)
    return (str(kind) if kind else None), str(message or getattr(exc, "message", None) or exc)


def permanent_kind(exc: BaseException) -> str | None:
    """The kind of permanent configuration error ``exc`` is, or None when it is not one."""
    status = getattr(exc, "status_code", None)
    kind = _KIND_BY_STATUS.get(status) if isinstance(status, int) else None
    if kind == "invalid_request" and _PER_REQUEST_400.search(provider_error(exc)[1]):
        return None
    return kind


def fatal_error(exc: BaseException, *, spec: str, what: str, successor: str | None = None,
                attempts: int = 1) -> FatalCoreError:
    """The one clear error for a permanent failure: the spec, the provider's words, what to do."""
    kind = permanent_kind(exc) or "invalid_request"
    status = getattr(exc, "status_code", None)
    ptype, pmessage = provider_error(exc)
    provider = f"HTTP {status} {ptype or type(exc).__name__}: {pmessage}"[:500]
    advice = _HINTS[kind]
    if successor and kind == "model_not_found":
        advice = f"{spec} is retired; use {successor} instead"
    elif successor:
        advice += f" ({spec} is retired; its successor is {successor})"
    message = (f"{what} failed with a permanent error, not retried ({provider}). {advice[0].upper()}{advice[1:]}. "
               f"Fix the configuration and run again; `gcop check {spec}` tests a spec with one tiny call.")
    return FatalCoreError(message, spec=spec, kind=kind, provider_message=pmessage, successor=successor,
                          status=status, attempts=attempts)


def describe(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None)
    prefix = f"HTTP {status}: " if status else ""
    return f"{prefix}{type(exc).__name__}: {exc}"[:500]


def backoff_sleep(seconds: float) -> None:
    """Sleep between attempts; the user's first Ctrl-C / SIGTERM ends it with
    :class:`~gcop_env.cores.base.CallInterrupted` (a 120 s retry-after does not hold a stopping run)."""
    if sleep_unless_stopped(seconds):
        raise CallInterrupted("stopped during a retry's backoff; no further attempt was sent")


def call_with_retries(fn: Callable[[], T], policy: RetryPolicy, *, what: str,
                      sleep: Callable[[float], None] = backoff_sleep, rng: random.Random | None = None,
                      spec: str = "", successor: str | None = None) -> T:
    """Call ``fn`` until it succeeds, a permanent error occurs, or attempts run out.

    ``spec`` and ``successor`` (for a known retired model) go into a :class:`FatalCoreError`.
    """
    rng = rng or random.Random()
    for attempt in range(1, policy.max_attempts + 1):
        try:
            return fn()
        except CoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified below, never swallowed
            if permanent_kind(exc) is not None:
                raise fatal_error(exc, spec=spec or what, what=what, successor=successor, attempts=attempt) from exc
            transient = is_transient(exc)
            if not transient:
                raise CoreError(f"{what} failed (not retryable): {describe(exc)}",
                                transient=False, attempts=attempt, cause=describe(exc)) from exc
            if attempt == policy.max_attempts:
                raise CoreError(f"{what} failed after {attempt} attempts: {describe(exc)}",
                                transient=True, attempts=attempt, cause=describe(exc)) from exc
            wait = retry_after_seconds(exc)  # >= 0 and finite, or None (see retry_after_from_headers)
            wait = policy.backoff(attempt, rng) if wait is None else min(max(0.0, wait), policy.max_retry_after_s)
            log.warning("%s: attempt %d/%d failed (%s); retrying in %.2fs",
                        what, attempt, policy.max_attempts, describe(exc), wait)
            sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover
