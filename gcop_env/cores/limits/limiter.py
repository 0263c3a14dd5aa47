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

import dataclasses
import email.utils
import hashlib
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from gcop_env.cores.base import CoreError

log = logging.getLogger(__name__)
T = TypeVar("T")

#: resources with a per-window limit, as named in the ledger and in :class:`LimiterStats`
RESOURCES = ("requests", "input_tokens", "output_tokens")
SLOTS_PER_WINDOW = 600
DEFAULT_PAUSE_S = 1.0  # a 429 that says nothing of when to come back
MAX_PAUSE_S = 120.0  # never stop an endpoint longer than this on one server reply
FILE_POLL_S = 0.05  # how often a waiter re-reads a shared ledger that another process may free
ENV_VARS = {"rpm": "GCOP_RPM", "itpm": "GCOP_ITPM", "otpm": "GCOP_OTPM"}
_KEYS = {"rpm": "rpm", "itpm": "itpm", "otpm": "otpm", "concurrency": "max_concurrency",
         "max_concurrency": "max_concurrency"}


@dataclass(frozen=True)
class RateLimits:
    """Limits for one endpoint. ``None`` is unlimited; all None (the default) limits nothing.

    Args:
        rpm: requests per window (per minute at the default window).
        itpm: input tokens per window.
        otpm: output tokens per window.
        max_concurrency: requests in flight at once to this endpoint.
        window_s: the window the three limits count over; 60 s is "per minute" as providers
            publish limits. A shorter window is for tests and local servers.
        shared_dir: a directory for the ledger file, shared by every process that uses it
            (default ``$GCOP_RATE_LIMIT_DIR``; None: this process only).
    """

    rpm: float | None = None
    itpm: float | None = None
    otpm: float | None = None
    max_concurrency: int | None = None
    window_s: float = 60.0
    shared_dir: str | None = None

    def __post_init__(self) -> None:
        for name in ("rpm", "itpm", "otpm"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value) or value < 1):
                raise ValueError(f"RateLimits.{name} must be a number >= 1 (per {self.window_s:g} s) or None "
                                 f"for unlimited, got {value!r}")
        if self.max_concurrency is not None and (isinstance(self.max_concurrency, bool)
                                                 or not isinstance(self.max_concurrency, int)
                                                 or self.max_concurrency < 1):
            raise ValueError(f"RateLimits.max_concurrency must be an int >= 1 or None, got {self.max_concurrency!r}")
        if not isinstance(self.window_s, (int, float)) or not math.isfinite(self.window_s) or self.window_s <= 0:
            raise ValueError(f"RateLimits.window_s must be a positive number of seconds, got {self.window_s!r}")
        if self.shared_dir is not None:
            object.__setattr__(self, "shared_dir", os.fspath(self.shared_dir))

    @property
    def limits_anything(self) -> bool:
        return any(v is not None for v in (self.rpm, self.itpm, self.otpm, self.max_concurrency))

    def limit(self, resource: str) -> float | None:
        return {"requests": self.rpm, "input_tokens": self.itpm, "output_tokens": self.otpm}[resource]

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def parse(cls, text: str, *, base: "RateLimits | None" = None) -> "RateLimits":
        """``"rpm:50,itpm:50000,otpm:10000,concurrency:8"`` (or ``"off"``) on top of ``base``."""
        base = base or cls()
        text = text.strip()
        if text.lower() in {"off", "none", "unlimited"}:
            return cls(window_s=base.window_s, shared_dir=base.shared_dir)
        changes: dict[str, Any] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, sep, value = item.partition(":")
            field_name = _KEYS.get(key.strip().lower())
            if not sep or field_name is None:
                raise ValueError(f"invalid rate limit {item!r} in {text!r}; expected KEY:VALUE with KEY one of "
                                 f"rpm, itpm, otpm, concurrency (e.g. 'rpm:50,itpm:50000'), or 'off'")
            value = value.strip()
            try:
                number = None if value.lower() in {"off", "none"} else float(value)
            except ValueError:
                raise ValueError(f"invalid number {value!r} for {key} in rate limits {text!r}") from None
            if field_name == "max_concurrency" and number is not None:
                if number != int(number):
                    raise ValueError(f"concurrency must be a whole number, got {value!r} in {text!r}")
                number = int(number)
            changes[field_name] = number
        return dataclasses.replace(base, **changes)


# -- configuration from the environment --------------------------------------------------------

def _env_number(name: str) -> float | None:
    raw = os.environ.get(name, "").strip()
    if not raw or raw.lower() in {"off", "none", "0"}:
        return None
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number; set a limit per minute (e.g. {name}=50) or unset it") from None


def env_limits(spec: str, backend_model: str) -> RateLimits:
    """The limits the environment sets for a remote endpoint.

    ``GCOP_RPM`` / ``GCOP_ITPM`` / ``GCOP_OTPM`` apply to every remote endpoint;
    ``GCOP_RATE_LIMITS="SPEC=rpm:50,itpm:50000;SPEC2=off"`` overrides them per core spec (the
    full spec, or ``backend:model`` for every base URL of that model).
    """
    limits = RateLimits(**{f: _env_number(var) for f, var in ENV_VARS.items()},
                        shared_dir=os.environ.get("GCOP_RATE_LIMIT_DIR") or None)
    overrides = _parse_overrides(os.environ.get("GCOP_RATE_LIMITS", ""))
    for key in (backend_model, spec):  # the exact spec wins over backend:model
        if key in overrides:
            limits = RateLimits.parse(overrides[key], base=limits)
    return limits


def _parse_overrides(text: str) -> dict[str, str]:
    overrides = {}
    for entry in filter(None, (part.strip() for part in text.split(";"))):
        spec, sep, settings = entry.rpartition("=")  # a spec may hold "=" (?api_version=...), settings never
        if not sep or ":" not in spec:
            raise ValueError(f"invalid GCOP_RATE_LIMITS entry {entry!r}; expected SPEC=rpm:N,itpm:N,otpm:N,"
                             f"concurrency:N (entries separated by ';'), e.g. "
                             f"'anthropic:claude-haiku-4-5-20251001=rpm:50,itpm:50000'")
        RateLimits.parse(settings)  # a typo fails here, naming the entry, not at the first call
        overrides[spec.strip()] = settings
    return overrides


# -- server quota headers ----------------------------------------------------------------------

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
    """OpenAI's reset durations: ``"1s"``, ``"6m0s"``, ``"20ms"``, ``"1h2m3.5s"``, or plain seconds."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(n) * scale[u] for n, u in parts)


def parse_reset_time(text: str, now: float | None = None) -> float | None:
    """Anthropic's resets: an RFC 3339 time; seconds from ``now`` (wall clock) until then, >= 0."""
    now = time.time() if now is None else now
    text = text.strip()
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return parse_duration(text)
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def parse_rate_headers(headers: Mapping[str, str] | None, now: float | None = None) -> dict[str, ServerQuota]:
    """The quotas in Anthropic's ``anthropic-ratelimit-*`` or OpenAI's ``x-ratelimit-*`` headers."""
    if not headers:
        return {}
    h = {str(k).lower(): str(v) for k, v in headers.items()}
    quotas: dict[str, ServerQuota] = {}
    for name, resource in _ANTHROPIC.items():
        prefix = f"anthropic-ratelimit-{name}-"
        if any(k.startswith(prefix) for k in h):
            reset = h.get(prefix + "reset")
            quotas[resource] = ServerQuota(resource, _number(h.get(prefix + "limit")), _number(h.get(prefix + "remaining")),
                                           parse_reset_time(reset, now) if reset else None)
    for name, resource in _OPENAI.items():
        keys = [f"x-ratelimit-{part}-{name}" for part in ("limit", "remaining", "reset")]
        if any(k in h for k in keys):
            reset = h.get(keys[2])
            quotas[resource] = ServerQuota(resource, _number(h.get(keys[0])), _number(h.get(keys[1])),
                                           parse_duration(reset) if reset else None)
    return quotas


def retry_after_from_headers(headers: Mapping[str, str] | None) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms`` or ``retry-after``), if any."""
    if not headers:
        return None
    h = {str(k).lower(): str(v) for k, v in headers.items()}
    ms = _number(h.get("retry-after-ms"))
    if ms is not None:
        return ms / 1000.0
    value = h.get("retry-after")
    if not value:
        return None
    seconds = _number(value)
    if seconds is not None:
        return seconds
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, parsed.timestamp() - time.time())


# -- what one request needs ----------------------------------------------------------------------

def estimate_input_tokens(request: Any) -> int:
    """An upper-leaning guess of a request's input tokens, before the server counts them.

    One token per three characters of system prompt and message text, plus 4 per message for the
    role markers. English prose runs about four characters per token and code about three, so this
    over-reserves a little; the reported usage replaces it after the call.
    """
    messages = getattr(request, "messages", ())
    chars = len(getattr(request, "system", "") or "") + sum(len(m.content) for m in messages)
    return math.ceil(chars / 3) + 4 * (len(messages) + 1)


@dataclass(frozen=True)
class Need:
    input_tokens: int = 0
    output_tokens: int = 0

    def amount(self, resource: str) -> float:
        if resource == "requests":
            return 1
        if resource == "tokens":
            return self.input_tokens + self.output_tokens
        return getattr(self, resource)

    @classmethod
    def of(cls, request: Any) -> "Need":
        sampling = getattr(request, "sampling", None)
        return cls(estimate_input_tokens(request), int(getattr(sampling, "max_tokens", 0) or 0))


@dataclass(frozen=True)
class Ticket:
    """An admitted request: what it booked, under which id in the ledger's pending requests."""

    id: str
    booked: dict[str, float]


@dataclass(frozen=True)
class LimiterStats:
    """What a limiter did: ``waits`` counts admissions delayed, by the first reason they waited
    (``requests``, ``input_tokens``, ``output_tokens``, ``concurrency``, ``paused``, or ``server_*``
    for a quota the server's headers said was spent)."""

    admitted: int
    waited: int
    waits: dict[str, int]
    rate_limited: int  # 429 / 529 replies seen
    pauses: int  # times those replies paused the endpoint for everyone
    headers_seen: int  # responses whose rate-limit headers were read


# -- where the ledger lives ----------------------------------------------------------------------

def _fresh_state() -> dict:
    # ledger: settled amounts per resource and slot; pending: each request in flight, "pid:n" ->
    # its booked amounts, which count in full until it is settled however long it takes
    return {"ledger": {r: {} for r in RESOURCES}, "pending": {}, "paused_until": 0.0, "server": {}}


class _MemoryStore:
    """The ledger of one process: a dict, guarded by the limiter's lock."""

    shared = False
    path = None

    def __init__(self) -> None:
        self.state = _fresh_state()

    @contextmanager
    def transaction(self) -> Iterator[dict]:
        yield self.state


class _FileStore:
    """The ledger in a JSON file, read and rewritten in place under an exclusive ``flock``.

    Every reader holds the lock, so the write needs no rename (a rename costs milliseconds on some
    file systems). The file is opened per transaction (not kept open) so that a forked child never
    shares the parent's lock. An unreadable file (a crash mid-write) starts a fresh ledger.
    """

    shared = True

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def transaction(self) -> Iterator[dict]:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = b""
            while chunk := os.read(fd, 1 << 20):
                raw += chunk
            state = _fresh_state()
            if raw:
                try:
                    state = json.loads(raw)
                    if not isinstance(state, dict) or set(state) != set(_fresh_state()):
                        raise ValueError("not a rate-limit ledger")
                except ValueError as exc:
                    log.warning("rate-limit ledger %s unreadable (%s); starting a fresh one", self.path, exc)
                    state = _fresh_state()
            yield state
            data = json.dumps(state, separators=(",", ":")).encode()
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, data)
            os.ftruncate(fd, len(data))
        finally:
            os.close(fd)  # releases the flock


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- the limiter --------------------------------------------------------------------------------

class _ReportedHeaders(threading.local):
    headers: Mapping[str, str] | None = None


_reported = _ReportedHeaders()


def report_headers(headers: Mapping[str, str] | None) -> None:
    """Called by an SDK core with a successful response's headers (same thread as the call)."""
    _reported.headers = headers


class EndpointLimiter:
    """The shared limiter of one endpoint. Thread-safe; use :func:`limiter_for` to get one."""

    def __init__(self, key: str, limits: RateLimits, *, clock: Callable[[], float] = time.time):
        # A wall clock, not a monotonic one: a shared ledger outlives processes (and boots).
        self.key = key
        self.clock = clock
        self._cond = threading.Condition(threading.RLock())
        self.reconfigure(limits)
        self._admitted = self._waited = self._rate_limited = self._pauses = self._headers_seen = 0
        self._waits: dict[str, int] = {}
        self._tickets = 0

    def __repr__(self) -> str:
        return f"EndpointLimiter({self.key!r}, {self.limits})"

    def reconfigure(self, limits: RateLimits) -> None:
        """Apply new limits; a new ``shared_dir`` moves the ledger there (bookings start afresh)."""
        with self._cond:
            store = getattr(self, "_store", None)
            if store is None or limits.shared_dir != self.limits.shared_dir:
                if limits.shared_dir:
                    name = hashlib.sha256(self.key.encode()).hexdigest()[:16]
                    store = _FileStore(Path(limits.shared_dir) / f"ratelimit-{name}.json")
                else:
                    store = _MemoryStore()
            self.limits, self._store = limits, store
            self._cond.notify_all()

    @property
    def _quantum(self) -> float:
        return self.limits.window_s / SLOTS_PER_WINDOW

    def stats(self) -> LimiterStats:
        with self._cond:
            return LimiterStats(self._admitted, self._waited, dict(self._waits), self._rate_limited, self._pauses,
                                self._headers_seen)

    # -- one attempt ------------------------------------------------------------------------------
    def call(self, fn: Callable[[Any], T], request: Any) -> T:
        """Run one attempt ``fn(request)`` inside the limits; learn from its headers either way."""
        ticket = self.acquire(Need.of(request))
        with _global_slot():
            _reported.headers = None
            try:
                result = fn(request)
            except BaseException as exc:
                self._failed(ticket, exc)
                raise
            headers, _reported.headers = _reported.headers, None
        usage = {"input_tokens": getattr(result, "input_tokens", None),
                 "output_tokens": getattr(result, "output_tokens", None)}
        self.settle(ticket, usage, headers)
        return result

    def try_acquire(self, need: Need) -> tuple[Ticket | None, float | None, str | None]:
        """Book ``need`` if it fits now: (ticket, 0, None); else (None, seconds to wait or None for
        "until a request in flight ends", the limit that stops it)."""
        with self._cond:
            try:
                with self._store.transaction() as state:
                    now = self.clock()
                    self._expire(state, now)
                    wait, reason = self._blocked(state, now, need)
                    if reason is not None:
                        return None, wait, reason
                    self._admitted += 1
                    return self._book(state, now, need), 0.0, None
            except OSError as exc:  # before the call: nothing paid, an infrastructure error of this step
                raise CoreError(f"{self.key}: the shared rate-limit ledger {self._store.path} cannot be used "
                                f"({exc}); make {self.limits.shared_dir} writable or unset GCOP_RATE_LIMIT_DIR / "
                                f"shared_dir", transient=False) from exc

    def acquire(self, need: Need) -> Ticket:
        """Wait until ``need`` fits every limit, then book it."""
        first_reason = None
        with self._cond:
            while True:
                ticket, wait, reason = self.try_acquire(need)
                if ticket is not None:
                    if first_reason is not None:
                        self._waited += 1
                        self._waits[first_reason] = self._waits.get(first_reason, 0) + 1
                    return ticket
                first_reason = first_reason or reason
                if self._store.shared:  # another process may free room at any time
                    wait = FILE_POLL_S if wait is None else min(wait, FILE_POLL_S)
                self._cond.wait(timeout=wait)

    def in_window(self) -> dict[str, float]:
        """What is booked in the current window per limited resource (requests, tokens) and in flight."""
        with self._cond:
            with self._store.transaction() as state:
                self._expire(state, self.clock())
                booked = {r: float(self._used(state, r)) for r in RESOURCES if self.limits.limit(r) is not None}
                booked["in_flight"] = float(len(state["pending"]))
                return booked

    def settle(self, ticket: Ticket, usage: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> None:
        """Replace the booking by what was used, counted from now (the response's arrival)."""
        actual = {"requests": 1}
        for resource in ("input_tokens", "output_tokens"):
            used = usage.get(resource)
            actual[resource] = ticket.booked.get(resource, 0) if used is None else max(0, int(used))
        self._release(ticket, actual, headers, status=None, retry_after=None)

    def _failed(self, ticket: Ticket, exc: BaseException) -> None:
        response = getattr(exc, "response", None)
        status = getattr(exc, "status_code", None)
        headers = getattr(response, "headers", None)
        answered = isinstance(status, int)  # the server replied: it generated nothing
        actual = {"requests": 1, "input_tokens": ticket.booked.get("input_tokens", 0),
                  "output_tokens": 0 if answered else ticket.booked.get("output_tokens", 0)}
        self._release(ticket, actual, headers, status=status if answered else None,
                      retry_after=retry_after_from_headers(headers))

    def _release(self, ticket: Ticket, actual: Mapping[str, float], headers: Mapping[str, str] | None,
                 status: int | None, retry_after: float | None) -> None:
        quotas = parse_rate_headers(headers) if headers else {}
        with self._cond:
            try:
                self._update(ticket, actual, quotas, status, retry_after)
            except OSError as exc:  # after the call: never lose a paid answer over the ledger
                log.warning("%s: the shared rate-limit ledger %s could not be updated (%s); this request's "
                            "usage is not counted", self.key, self._store.path, exc)
            self._cond.notify_all()

    def _update(self, ticket: Ticket, actual: Mapping[str, float], quotas: dict[str, ServerQuota],
                status: int | None, retry_after: float | None) -> None:
        with self._store.transaction() as state:
            now = self.clock()
            self._expire(state, now)
            slot = self._slot(now)
            # a request counts from its admission until its answer came, then one window more:
            # the server saw it somewhere in between
            booked = state["pending"].pop(ticket.id, ticket.booked)
            for resource, amount in booked.items():
                ledger = state["ledger"][resource]
                ledger[str(slot)] = ledger.get(str(slot), 0) + actual.get(resource, amount)
            if quotas:
                self._headers_seen += 1
                for resource, quota in quotas.items():
                    if quota.remaining is not None and quota.reset_after_s is not None:
                        state["server"][resource] = [quota.remaining, now + min(quota.reset_after_s, MAX_PAUSE_S)]
            if status in (429, 529):
                self._rate_limited += 1
                pause = retry_after
                if pause is None:
                    spent = [q.reset_after_s for q in quotas.values()
                             if q.remaining is not None and q.remaining <= 0 and q.reset_after_s is not None]
                    pause = max(spent) if spent else DEFAULT_PAUSE_S
                until = now + min(max(pause, 0.0), MAX_PAUSE_S)
                if until > state["paused_until"]:
                    state["paused_until"] = until
                    self._pauses += 1
                    log.warning("%s: the server refused a request (HTTP %s); every caller of this endpoint "
                                "waits %.2fs", self.key, status, until - now)

    # -- the ledger -----------------------------------------------------------------------------
    def _slot(self, now: float) -> int:
        return math.ceil(now / self._quantum)

    def _expiry(self, slot: int) -> float:
        return slot * self._quantum + self.limits.window_s

    def _expire(self, state: dict, now: float) -> None:
        for ledger in state["ledger"].values():
            for slot in [s for s, amount in ledger.items() if self._expiry(int(s)) <= now or amount <= 0]:
                del ledger[slot]
        for resource, (remaining, reset_at) in list(state["server"].items()):
            if reset_at <= now:
                del state["server"][resource]
        if self._store.shared:
            dead = {p for p in {t.split(":")[0] for t in state["pending"]}
                    if int(p) != os.getpid() and not _pid_alive(int(p))}
            for ticket in [t for t in state["pending"] if t.split(":")[0] in dead]:
                del state["pending"][ticket]
        if state["paused_until"] - now > MAX_PAUSE_S:  # a ledger from another clock: ignore
            state["paused_until"] = 0.0

    def _capped(self, need: Need, resource: str) -> float:
        limit = self.limits.limit(resource)
        amount = need.amount(resource)
        return min(amount, limit) if limit is not None else amount  # an oversize request waits for an empty window

    def _blocked(self, state: dict, now: float, need: Need) -> tuple[float | None, str | None]:
        """(seconds to wait or None for "until notified", reason), or (0, None) when it fits now."""
        if state["paused_until"] > now:
            return state["paused_until"] - now, "paused"
        for resource, (remaining, reset_at) in state["server"].items():
            if remaining < need.amount(resource):
                return reset_at - now, f"server_{resource}"
        cap = self.limits.max_concurrency
        if cap is not None and len(state["pending"]) >= cap:
            return None, "concurrency"
        for resource in RESOURCES:
            limit = self.limits.limit(resource)
            if limit is None:
                continue
            ledger = state["ledger"][resource]
            used = self._used(state, resource)
            amount = self._capped(need, resource)
            if used + amount <= limit:
                continue
            for slot in sorted(ledger, key=int):  # the oldest bookings expire first
                used -= ledger[slot]
                if used + amount <= limit:
                    return max(self._expiry(int(slot)) - now, 0.0) + 1e-3, resource
            return None, resource  # requests in flight hold the room: wait until one is settled
        return 0.0, None

    @staticmethod
    def _used(state: dict, resource: str) -> float:
        return sum(state["ledger"][resource].values()) + sum(p.get(resource, 0) for p in state["pending"].values())

    def _book(self, state: dict, now: float, need: Need) -> Ticket:
        booked = {r: self._capped(need, r) for r in RESOURCES if self.limits.limit(r) is not None}
        for resource, entry in state["server"].items():
            entry[0] -= need.amount(resource)  # until the next headers say otherwise
        self._tickets += 1
        ticket = Ticket(f"{os.getpid()}:{id(self)}:{self._tickets}", booked)
        state["pending"][ticket.id] = booked
        return ticket


# -- the process-wide cap on requests in flight ----------------------------------------------------

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
            raw = _env_number("GCOP_MAX_CONCURRENCY")
            if raw is not None and (raw != int(raw) or raw < 1):
                raise ValueError(f"GCOP_MAX_CONCURRENCY={raw!r} must be a whole number >= 1 (or unset)")
            n = int(raw) if raw is not None else None
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


# -- the registry: one limiter per endpoint ------------------------------------------------------

_registry: dict[str, EndpointLimiter] = {}
_registry_lock = threading.Lock()


def endpoint_key(core: Any) -> str:
    """``backend:model@base_url``: requests to it share one limit (``backend:model`` for local cores)."""
    base_url = core.resolved_base_url() if hasattr(core, "resolved_base_url") else None
    return f"{core.backend}:{core.model}" + (f"@{base_url}" if base_url else "")


def resolve_limits(core: Any, limits: RateLimits | Mapping[str, Any] | None) -> RateLimits:
    """The limits for ``core``: ``limits`` when given (it replaces the environment's, except for
    ``shared_dir``), else the environment's for a remote endpoint, else none."""
    if isinstance(limits, Mapping):
        unknown = set(limits) - {f.name for f in dataclasses.fields(RateLimits)}
        if unknown:
            raise ValueError(f"unknown rate limit field(s) {sorted(unknown)}; valid: rpm, itpm, otpm, "
                             f"max_concurrency, window_s, shared_dir")
        limits = RateLimits(**limits)
    if limits is not None and not isinstance(limits, RateLimits):
        raise TypeError(f"limits must be a RateLimits, a dict of its fields or None, got {type(limits).__name__}")
    remote = hasattr(core, "resolved_base_url")
    from_env = env_limits(core.spec, f"{core.backend}:{core.model}") if remote else RateLimits(
        shared_dir=os.environ.get("GCOP_RATE_LIMIT_DIR") or None)
    if limits is None:
        return from_env
    if limits.shared_dir is None and from_env.shared_dir:
        limits = dataclasses.replace(limits, shared_dir=from_env.shared_dir)
    return limits


def limiter_for(core: Any, limits: RateLimits | Mapping[str, Any] | None = None) -> EndpointLimiter:
    """The one limiter of ``core``'s endpoint in this process, made on first use.

    A second core of the same endpoint with other limits tightens the shared ones (the lower of
    each); limits counted over another window, or in another shared directory, are refused.
    """
    key = endpoint_key(core)
    wanted = resolve_limits(core, limits)
    max_concurrency()  # a bad GCOP_MAX_CONCURRENCY fails here, when the core is made, not at its first call
    with _registry_lock:
        limiter = _registry.get(key)
        if limiter is None:
            limiter = _registry[key] = EndpointLimiter(key, wanted)
            return limiter
        current = limiter.limits
        if wanted == current or not wanted.limits_anything:
            return limiter
        if (wanted.window_s, wanted.shared_dir) != (current.window_s, current.shared_dir) and current.limits_anything:
            raise ValueError(f"{key} already has rate limits {current} in this process; limits over another window "
                             f"or shared directory ({wanted}) cannot be combined with them. Use the same window_s and "
                             f"shared_dir for every core of this endpoint.")
        if not current.limits_anything:
            limiter.reconfigure(wanted)
            return limiter

        def lower(a, b):
            return b if a is None else a if b is None else min(a, b)

        merged = dataclasses.replace(current, window_s=wanted.window_s, **{
            f: lower(getattr(current, f), getattr(wanted, f)) for f in ("rpm", "itpm", "otpm", "max_concurrency")})
        if merged != current:
            log.info("%s: rate limits tightened to %s", key, merged)
            limiter.reconfigure(merged)
        return limiter


def reset_limiters() -> None:
    """Forget every limiter and the process cap (tests; a long-lived process changing settings)."""
    global _global_cap
    with _registry_lock:
        _registry.clear()
    with _global_lock:
        _global_cap = None


__all__ = ["EndpointLimiter", "LimiterStats", "RateLimits", "ServerQuota", "endpoint_key", "env_limits",
           "estimate_input_tokens", "limiter_for", "max_concurrency", "parse_rate_headers", "report_headers",
           "reset_limiters", "resolve_limits", "retry_after_from_headers", "set_max_concurrency"]
