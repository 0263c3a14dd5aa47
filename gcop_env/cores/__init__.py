"""Black-box cores chosen by a spec string, behind one small interface.

``make_core("anthropic:claude-haiku-4-5-20251001")`` gives a :class:`ManagedCore`: the raw
backend plus retries, pricing, the on-disk response cache and in-flight de-duplication. Spec forms:

* ``anthropic:MODEL``                    Anthropic Messages API (official SDK)
* ``anthropic:MODEL?api_version=2023-06-01``  the same, on the API version that takes temperature
* ``openai:MODEL``                       OpenAI-compatible server from ``OPENAI_BASE_URL`` (or OpenAI)
* ``openai:MODEL@http://HOST:PORT/v1``   an explicit OpenAI-compatible server (vLLM, llama.cpp)
* ``hf:PATH`` / ``hf:PATH?gguf_file=NAME``  a local transformers causal LM
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any
from urllib.parse import parse_qsl

from gcop_env.cache import ResponseCache, request_key
from gcop_env.cores.base import (Core, CoreError, CoreRequest, CoreResponse, FatalCoreError, Message,
                                 SamplingParams)
from gcop_env.cores.limits import RateLimits, limiter_for
from gcop_env.cores.models import DEFAULT_CORE, DEFAULT_TEACHER, retired_successor, warn_lifecycle
from gcop_env.cores.pricing import price_tokens, set_price
from gcop_env.cores.retry import RetryPolicy, call_with_retries
from gcop_env.prompts import PROMPT_VERSION

__all__ = [
    "Core", "CoreError", "CoreRequest", "CoreResponse", "DEFAULT_CORE", "DEFAULT_TEACHER", "FatalCoreError",
    "ManagedCore", "Message", "RateLimits", "RetryPolicy", "SamplingParams", "make_core", "parse_core_spec", "sampling_report",
    "set_price",
]

SPEC_FORMS = (
    f"anthropic:MODEL (e.g. {DEFAULT_CORE}) or anthropic:MODEL?api_version=2023-06-01, "
    "openai:MODEL or openai:MODEL@http://HOST:PORT/v1, "
    "hf:PATH or hf:PATH?gguf_file=NAME"
)


def parse_core_spec(spec: str) -> tuple[str, str, dict[str, str]]:
    """Split a spec into (backend, model, options). Raises ValueError listing the valid forms."""
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(f"invalid core spec {spec!r}; expected one of: {SPEC_FORMS}")
    backend, rest = spec.split(":", 1)
    backend = backend.strip().lower()
    options: dict[str, str] = {}
    if backend == "openai" and "@" in rest:
        rest, options["base_url"] = rest.split("@", 1)
        if not options["base_url"].startswith(("http://", "https://")):
            raise ValueError(f"invalid base URL in core spec {spec!r}; expected openai:MODEL@http://HOST:PORT/v1")
    allowed = {"hf": {"gguf_file"}, "anthropic": {"api_version"}}.get(backend, set())
    if allowed and "?" in rest:
        rest, query = rest.split("?", 1)
        try:
            options.update(parse_qsl(query, strict_parsing=True))
        except ValueError:
            raise ValueError(f"invalid options {query!r} in core spec {spec!r}; expected ?KEY=VALUE") from None
        unknown = set(options) - allowed
        if unknown:
            raise ValueError(f"unknown option(s) {sorted(unknown)} in core spec {spec!r}; {backend}: accepts {sorted(allowed)}")
    if backend not in {"anthropic", "openai", "hf"} or not rest.strip():
        raise ValueError(f"invalid core spec {spec!r}; expected one of: {SPEC_FORMS}")
    return backend, rest.strip(), options


def _build_backend(spec: str, timeout_s: float) -> Core:
    backend, model, options = parse_core_spec(spec)
    if backend == "anthropic":
        from gcop_env.cores.anthropic_core import AnthropicCore
        return AnthropicCore(model, timeout_s=timeout_s, api_version=options.get("api_version"))
    if backend == "openai":
        from gcop_env.cores.openai_core import OpenAICore
        return OpenAICore(model, base_url=options.get("base_url"), timeout_s=timeout_s)
    from gcop_env.cores.hf_core import HFCore
    return HFCore(model, gguf_file=options.get("gguf_file"))


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
        self.budget = budget  # a gcop_env.budget.Budget shared by the run's cores, or None
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

    def _call(self, request: CoreRequest) -> CoreResponse:
        response = call_with_retries(lambda: self.limiter.call(self.inner.complete, request), self.retry, what=f"core {self.spec}",
                                     spec=self.spec, successor=retired_successor(self.backend, self.model))
        if response.sampling is None:
            response = dataclasses.replace(response, sampling=self.inner.sent_sampling(request.sampling))
        response = self._priced(response, cached=False)
        with self._lock:
            self.calls += 1
            self.spent_usd += response.cost_usd
        return response

    def _call_within_budget(self, request: CoreRequest) -> CoreResponse:
        """``_call`` under the budget: its worst case is reserved first (``BudgetExceeded``: nothing is
        sent), then settled at the real price; an answer already paid for is always returned."""
        if self.budget is None:
            return self._call(request)
        hold = self.budget.reserve(self, request)
        response = None
        try:
            response = self._call(request)
        finally:
            hold.settle(response)  # None: the call failed and is counted as free
        return response

    def complete(self, request: CoreRequest) -> CoreResponse:
        if self.cache is None:
            return self._call_within_budget(request)
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
            response = self._call_within_budget(request)
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


def sampling_report(core: Core, sampling: SamplingParams) -> dict:
    """What was asked, what the backend really sends, and whether repeats give the same answer.

    Run summaries record this, so a reader never takes an unsent temperature for the one used.
    """
    return {"requested": sampling.as_dict(), "sent": core.sent_sampling(sampling),
            "deterministic": core.is_deterministic(sampling)}


def make_core(spec: str | Core, *, cache: bool | str | ResponseCache | None = None,
              retry: RetryPolicy | None = None, timeout_s: float = 120.0,
              prices: dict[str, tuple[float, float]] | None = None, limits: RateLimits | None = None,
              budget: Any = None) -> Core:
    """Build a core from a spec string (or wrap a :class:`Core`).

    ``cache``: None or True for the default on-disk cache, a path or a :class:`ResponseCache`,
    or False to turn caching off. ``limits``: a :class:`RateLimits` (or a dict of its fields) for
    this endpoint, replacing the environment's ``GCOP_RPM`` / ``GCOP_RATE_LIMITS`` settings; every
    core of one endpoint in the process shares one limiter. ``budget``: a
    :class:`gcop_env.budget.Budget` that every real call of the core must fit. A
    :class:`ManagedCore` is returned as it is unless ``cache``, ``retry``, ``limits`` or ``budget``
    is given, in which case its backend is rewrapped with them.
    """
    if isinstance(spec, ManagedCore):
        if cache is None and retry is None and limits is None and budget is None:
            return spec
        keep = spec.cache if spec.cache is not None else False  # a core without a cache stays without one
        return make_core(spec.inner, cache=keep if cache is None else cache, retry=retry or spec.retry,
                         prices=prices or spec.prices, limits=limits or spec.limits, budget=budget or spec.budget)
    backend = spec if isinstance(spec, Core) else _build_backend(spec, timeout_s)
    if not isinstance(spec, Core):
        from gcop_env.cores.pricing import lookup_price, warn_unpriced
        if lookup_price(backend.backend, backend.model, prices) is None:
            warn_unpriced(backend.backend, backend.model)
    if cache is None or cache is True:
        store = ResponseCache()
    elif cache is False:
        store = None
    elif isinstance(cache, ResponseCache):
        store = cache
    else:
        store = ResponseCache(cache)
    return ManagedCore(backend, cache=store, retry=retry or RetryPolicy(), prices=prices, limits=limits,
                       budget=budget)
