"""Rate limits shared by everything in a process (or on a machine) that calls one endpoint.

Every :class:`~gcop_env.cores.ManagedCore` asks the limiter of its *endpoint* (backend, model,
resolved base URL) before each HTTP attempt, so the env's core, the baseline draws, the judge,
``gcop curate``'s teacher, ``gcop eval`` and the GRPO reward share one budget per endpoint
whatever thread they run on. Retries are attempts too: each one is admitted on its own.

What is limited (:class:`RateLimits`): requests, input tokens and output tokens per window
(60 s: per minute, as providers publish them), requests in flight per endpoint, and requests
in flight in the whole process (``GCOP_MAX_CONCURRENCY``).

How: a *sliding window* ledger per resource, not a refill bucket. A bucket full at the start of a
minute lets 2x the limit through within one minute, which a server counting over a sliding minute
refuses; a sliding window admits nothing that a token bucket holding one minute's limit
(Anthropic's) would refuse.
Each request's entry is held from its admission until its response arrived (then for one window),
so the server, which saw the request somewhere in between, never counts more than the limit in
any window, whatever the network delay (the price, at the limit only: an answer's latency over the
window, e.g. 10% for 6 s answers at 60 s). Amounts are booked in slots of 1/600 of the window,
rounded up (conservative by at most 0.1 s at 60 s).

* Input tokens are estimated before the call (:func:`estimate_input_tokens`: one token per three
  characters of system prompt and messages plus 4 per message, which over-reserves for English
  prose at about four characters per token), then corrected to the usage the server reports.
* Output tokens are reserved as ``max_tokens`` (as Anthropic does for its OTPM limit) and settled
  to the reported usage.
* A failed attempt keeps its request and its input estimate booked; its output reservation is
  freed when the server answered with an error (it generated nothing), kept on a timeout or a
  dropped connection (it may have).

Adaptive back-off: each response's ``anthropic-ratelimit-*`` / ``x-ratelimit-*`` headers (from
successes and errors) tell the limiter how much the server has left until when; a request that
needs more than is left waits for the reset. A 429 (or 529 overloaded) pauses the whole endpoint
for its ``retry-after`` (else until the exhausted quota resets, else 1 s), so every thread and,
when shared, every process waits, not only the one refused.

Cross-process: with ``shared_dir`` (or ``GCOP_RATE_LIMIT_DIR``) the ledger lives in a small JSON
file per endpoint, read and written under ``fcntl.flock`` (POSIX): N processes on one machine
share one limit. Requests in flight are booked per process id; a dead process's are dropped.
"""

from __future__ import annotations

from __future__ import annotations

from gcop_env.cores.limits.concurrency import max_concurrency, set_max_concurrency
from gcop_env.cores.limits.config import ENV_VARS, RateLimits, env_limits
from gcop_env.cores.limits.headers import (ServerQuota, parse_duration, parse_rate_headers, parse_reset_time,
                                           report_headers, retry_after_from_headers)
from gcop_env.cores.limits.ledger import RESOURCES
from gcop_env.cores.limits.limiter import EndpointLimiter, LimiterStats
from gcop_env.cores.limits.need import Need, Ticket, estimate_input_tokens
from gcop_env.cores.limits.registry import endpoint_key, limiter_for, reset_limiters, resolve_limits

__all__ = ["ENV_VARS", "EndpointLimiter", "LimiterStats", "Need", "RESOURCES", "RateLimits", "ServerQuota", "Ticket", "endpoint_key", "env_limits",
           "estimate_input_tokens", "limiter_for", "max_concurrency", "parse_duration", "parse_rate_headers", "parse_reset_time", "report_headers",
           "reset_limiters", "resolve_limits", "retry_after_from_headers", "set_max_concurrency"]
