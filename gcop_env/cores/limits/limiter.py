"""The limiter of one endpoint: admits each attempt against the sliding-window ledger, books and
settles its tokens, and pauses the endpoint on a 429 (see :mod:`gcop_env.cores.limits`)."""

from __future__ import annotations

import hashlib
import logging
import math
import numbers
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

from gcop_env.cores.base import CallInterrupted, CoreError
from gcop_env.cores.limits.concurrency import _global_slot
from gcop_env.cores.limits.config import RateLimits
from gcop_env.cores.limits.headers import ServerQuota, _reported, parse_rate_headers, retry_after_from_headers
from gcop_env.cores.limits.ledger import RESOURCES, _FileStore, _MemoryStore, stale_ticket, ticket_id
from gcop_env.cores.limits.need import Need, Ticket
from gcop_env.utils.interrupt import stop_signalled

log = logging.getLogger(__name__)
T = TypeVar("T")

SLOTS_PER_WINDOW = 600
DEFAULT_PAUSE_S = 1.0  # a 429 that says nothing of when to come back
MAX_PAUSE_S = 120.0  # never stop an endpoint longer than this on one server reply
FILE_POLL_S = 0.05  # how often a waiter re-reads a shared ledger that another process may free
STOP_POLL_S = 0.25  # how often a waiter looks whether the user asked to stop


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
        """Wait until ``need`` fits every limit, then book it.

        The user's first Ctrl-C / SIGTERM ends the wait (:class:`~gcop_env.cores.base.CallInterrupted`,
        nothing sent): a wait that may never end (a booking that never settles) never holds a run."""
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
                if stop_signalled():
                    raise CallInterrupted(f"{self.key}: stopped while waiting for the rate limit ({first_reason}); "
                                          f"nothing was sent")
                if wait is not None:  # never a negative, NaN or endless sleep, whatever a ledger holds
                    wait = min(max(wait, 0.0), MAX_PAUSE_S) if math.isfinite(wait) else DEFAULT_PAUSE_S
                if self._store.shared:  # another process may free room at any time
                    wait = FILE_POLL_S if wait is None else min(wait, FILE_POLL_S)
                self._cond.wait(timeout=STOP_POLL_S if wait is None else min(wait, STOP_POLL_S))

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
            valid = isinstance(used, numbers.Real) and not isinstance(used, bool) and math.isfinite(used) and used >= 0
            # what the server reported; a count that is not one (a CoreResponse never holds one) keeps the booking
            actual[resource] = int(used) if valid else ticket.booked.get(resource, 0)
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
                pause = retry_after if retry_after is not None and math.isfinite(retry_after) else None
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
        if self._store.shared:  # a killed process's bookings (its pid gone or reused, or too old) are dropped
            for ticket in [t for t in state["pending"] if stale_ticket(t, now)]:
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
        ticket = Ticket(ticket_id(f"{id(self)}:{self._tickets}", now), booked)
        state["pending"][ticket.id] = booked
        return ticket
