"""What a server says of its quotas: the ``anthropic-ratelimit-*`` / ``x-ratelimit-*`` headers,
``retry-after``, and how an SDK core hands a response's headers to the limiter."""

from __future__ import annotations

import email.utils
import math
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class ServerQuota:
    """One quota as a response's headers state it. ``resource``: requests, input_tokens,
    output_tokens or tokens (input and output together)."""

    resource: str
    limit: float | None
    remaining: float | None
    reset_after_s: float | None


_ANTHROPIC = {"requests": "requests", "input-tokens": "input_tokens", "output-tokens": "output_tokens",
              "tokens": "tokens"}
_OPENAI = {"requests": "requests", "tokens": "tokens"}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_duration(text: str) -> float | None:
    """OpenAI's reset durations: ``"1s"``, ``"6m0s"``, ``"20ms"``, ``"1h2m3.5s"``, or plain seconds.

    None for anything else, a negative, NaN or infinite number included: a server's garbage is
    treated as absent, never slept on."""
    text = text.strip()
    seconds = _number(text)
    if seconds is not None:
        return seconds if seconds >= 0 else None
    if text.lower().lstrip("+-") in ("nan", "inf", "infinity"):
        return None
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    total = sum(float(n) * scale[u] for n, u in parts)
    return total if math.isfinite(total) else None


def parse_reset_time(text: str, now: float | None = None) -> float | None:
    """Anthropic's resets: an RFC 3339 time; seconds from ``now`` (wall clock) until then, >= 0."""
    now = time.time() if now is None else now
    text = text.strip()
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, OverflowError):
            return parse_duration(text)
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def _number(text: str | None) -> float | None:
    """A header's number; None when it is absent or not a finite number ("nan", "-inf", "1e999")."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _count(text: str | None) -> float | None:
    """A quota's limit or remaining amount: a finite number, negative ones read as 0 (spent)."""
    value = _number(text)
    return None if value is None else max(0.0, value)


def parse_rate_headers(headers: Mapping[str, str] | None, now: float | None = None) -> dict[str, ServerQuota]:
    """The quotas in Anthropic's ``anthropic-ratelimit-*`` or OpenAI's ``x-ratelimit-*`` headers."""
    if not headers:
        return {}
    h = {str(k).lower(): str(v) for k, v in headers.items()}
    if not any(k.startswith(("anthropic-ratelimit-", "x-ratelimit-")) for k in h):
        return {}  # the usual reply of a local server: no quota headers at all
    quotas: dict[str, ServerQuota] = {}
    for name, resource in _ANTHROPIC.items():
        prefix = f"anthropic-ratelimit-{name}-"
        if any(k.startswith(prefix) for k in h):
            reset = h.get(prefix + "reset")
            quotas[resource] = ServerQuota(resource, _count(h.get(prefix + "limit")), _count(h.get(prefix + "remaining")),
                                           parse_reset_time(reset, now) if reset else None)
    for name, resource in _OPENAI.items():
        keys = [f"x-ratelimit-{part}-{name}" for part in ("limit", "remaining", "reset")]
        if any(k in h for k in keys):
            reset = h.get(keys[2])
            quotas[resource] = ServerQuota(resource, _count(h.get(keys[0])), _count(h.get(keys[1])),
                                           parse_duration(reset) if reset else None)
    return quotas


def retry_after_from_headers(headers: Mapping[str, str] | None) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms`` or ``retry-after``), if any: >= 0
    (a negative value means now), finite (NaN or infinity counts as absent). Callers cap it."""
    if not headers:
        return None
    h = {str(k).lower(): str(v) for k, v in headers.items()}
    ms = _number(h.get("retry-after-ms"))
    if ms is not None:
        return max(0.0, ms / 1000.0)  # a negative wait is "now"; NaN or infinite was dropped as absent
    value = h.get("retry-after")
    if not value:
        return None
    seconds = _number(value)
    if seconds is not None:
        return max(0.0, seconds)
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if parsed.tzinfo is None:
        return None
    return max(0.0, parsed.timestamp() - time.time())


# -- headers of a successful response, handed over by the SDK core on the calling thread --------

class _ReportedHeaders(threading.local):
    headers: Mapping[str, str] | None = None


_reported = _ReportedHeaders()


def report_headers(headers: Mapping[str, str] | None) -> None:
    """Called by an SDK core with a successful response's headers (same thread as the call)."""
    _reported.headers = headers
