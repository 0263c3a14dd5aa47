"""The managed core: a backend with retries, rate limits, pricing, the budget, the response cache
and in-flight de-duplication. :func:`gcop_env.cores.make_core` builds one from a spec."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

from gcop_env.cores.base import Core, CoreError, CoreRequest, CoreResponse, MalformedReply, SamplingParams
from gcop_env.cores.cache import PROMPT_VERSION, ResponseCache, request_key
from gcop_env.cores.limits import RateLimits, limiter_for
from gcop_env.cores.models import retired_successor, warn_lifecycle
from gcop_env.cores.pricing import price_tokens
from gcop_env.cores.retry import RetryPolicy, call_with_retries


class _InFlight:
    """One request being made: the threads asking for the same key wait for its outcome."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.response: CoreResponse | None = None
        self.error: BaseException | None = None


class ManagedCore(Core):
    """A backend with retries, rate limits, pricing, the response cache and in-flight de-duplication.

    Identical concurrent requests (same cache key) are made once: the first thread calls the API,
    the others wait for its answer and get it as a cache hit (they paid nothing). Counts real
    calls, cache hits and spend, so callers (and tests) can see what was paid. Every attempt (a
    retry too) is admitted by the endpoint's shared :attr:`limiter` (:mod:`gcop_env.cores.limits`).
    """

    def __init__(self, backend: Core, *, cache: ResponseCache | None, retry: RetryPolicy,
                 prices: dict[str, tuple[float, float]] | None = None, limits: RateLimits | None = None,
                 budget: Any = None):
        self.inner = backend
        self.backend = backend.backend
        self.model = backend.model
        self.cache = cache
        self.retry = retry
        self.prices = prices
        self.limits = limits  # None: the environment's (GCOP_RPM, GCOP_RATE_LIMITS, ...)
        self.calls = 0
        self.cache_hits = 0
        self.shared_inflight = 0  # requests answered by another thread's identical in-flight call
        self.spent_usd = 0.0
        self.budget = budget  # a gcop_env.cores.budget.Budget shared by the run's cores, or None
        self._init_runtime()
        warn_lifecycle(self.backend, self.model)

    def _init_runtime(self) -> None:
        self._lock = threading.Lock()
        self._inflight: dict[str, _InFlight] = {}
        self.limiter = limiter_for(self.inner, self.limits)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_lock", None)
        state.pop("_inflight", None)
        state.pop("limiter", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._init_runtime()

    @property
    def spec(self) -> str:
        return self.inner.spec

    def sent_sampling(self, sampling: SamplingParams) -> dict:
        return self.inner.sent_sampling(sampling)

    def is_deterministic(self, sampling: SamplingParams) -> bool:
        return self.inner.is_deterministic(sampling)

    def cache_identity(self) -> dict:
        return self.inner.cache_identity()

    def _priced(self, response: CoreResponse, cached: bool) -> CoreResponse:
        cost, priced = price_tokens(self.backend, self.model, response.input_tokens, response.output_tokens, self.prices)
        return dataclasses.replace(response, cost_usd=cost, cached=cached, priced=priced)

    def is_priced(self) -> bool:
        return price_tokens(self.backend, self.model, 0, 0, self.prices)[1]

    def request_key(self, request: CoreRequest) -> str:
        """The cache key: what decides the answer, including the endpoint and the sampling really sent."""
        return request_key(self.backend, self.model, request, PROMPT_VERSION,
                           identity=self.inner.cache_identity(), sampling=self.inner.sent_sampling(request.sampling))

    def _attempt(self, request: CoreRequest) -> CoreResponse:
        """One attempt, inside the rate limits and the budget: its worst case is reserved first
        (``BudgetExceeded``: nothing is sent), then settled at the real price; an answer already paid
        for is always returned. A failed attempt is free, a malformed reply counts its worst case."""
        hold = self.budget.reserve(self, request) if self.budget is not None else None
        response = None
        try:
            response = self.limiter.call(self.inner.complete, request)
            if response.sampling is None:
                response = dataclasses.replace(response, sampling=self.inner.sent_sampling(request.sampling))
            response = self._priced(response, cached=False)
            return response
        except MalformedReply:
            if hold is not None:
                hold.settle_worst_case()
            raise
        finally:
            if hold is not None:
                hold.settle(response)  # None: the attempt failed and is counted as free

    def _call(self, request: CoreRequest) -> CoreResponse:
        response = call_with_retries(lambda: self._attempt(request), self.retry, what=f"core {self.spec}",
                                     spec=self.spec, successor=retired_successor(self.backend, self.model))
        with self._lock:
            self.calls += 1
            self.spent_usd += response.cost_usd
        return response

    def complete(self, request: CoreRequest) -> CoreResponse:
        if self.cache is None:
            return self._call(request)
        key = self.request_key(request)
        hit = self.cache.get(key)
        if hit is not None:
            with self._lock:
                self.cache_hits += 1
            return self._priced(hit, cached=True)
        with self._lock:
            flight = self._inflight.get(key)
            leader = flight is None
            if leader:
                flight = self._inflight[key] = _InFlight()
        if not leader:
            flight.done.wait()
            if isinstance(flight.error, Exception):
                raise flight.error
            if flight.error is not None:  # the leader was interrupted (Ctrl-C): not this thread's signal
                raise CoreError(f"core {self.spec}: the identical request in flight was interrupted", transient=True)
            with self._lock:
                self.cache_hits += 1
                self.shared_inflight += 1
            return dataclasses.replace(flight.response, cached=True)
        try:
            response = self._call(request)
            self.cache.put(key, response)  # never raises: a failed write still returns the paid answer
            flight.response = response
            return response
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                self._inflight.pop(key, None)
            flight.done.set()

    def close(self) -> None:
        self.inner.close()
