"""Black-box cores chosen by a spec string, behind one small interface.

``make_core("anthropic:claude-3-5-haiku-20241022")`` gives a :class:`ManagedCore`: the raw
backend plus retries, pricing and the on-disk response cache. Spec forms:

* ``anthropic:MODEL``                    Anthropic Messages API (official SDK)
* ``anthropic:MODEL?api_version=2023-06-01``  the same, on the API version that takes temperature
* ``openai:MODEL``                       OpenAI-compatible server from ``OPENAI_BASE_URL`` (or OpenAI)
* ``openai:MODEL@http://HOST:PORT/v1``   an explicit OpenAI-compatible server (vLLM, llama.cpp)
* ``hf:PATH`` / ``hf:PATH?gguf_file=NAME``  a local transformers causal LM
"""

from __future__ import annotations

import dataclasses
import threading
from urllib.parse import parse_qsl

from gcop_env.cache import ResponseCache, request_key
from gcop_env.cores.base import (Core, CoreError, CoreRequest, CoreResponse, Message,
                                 SamplingParams)
from gcop_env.cores.pricing import price_tokens, set_price
from gcop_env.cores.retry import RetryPolicy, call_with_retries
from gcop_env.prompts import PROMPT_VERSION

__all__ = [
    "Core", "CoreError", "CoreRequest", "CoreResponse", "ManagedCore", "Message", "RetryPolicy",
    "SamplingParams", "make_core", "parse_core_spec", "set_price",
]

SPEC_FORMS = (
    "anthropic:MODEL (e.g. anthropic:claude-3-5-haiku-20241022) or anthropic:MODEL?api_version=2023-06-01, "
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


class ManagedCore(Core):
    """A backend with retries, pricing and the response cache around it.

    Counts real calls, cache hits and spend, so callers (and tests) can see what was paid.
    """

    def __init__(self, backend: Core, *, cache: ResponseCache | None, retry: RetryPolicy,
                 prices: dict[str, tuple[float, float]] | None = None):
        self.inner = backend
        self.backend = backend.backend
        self.model = backend.model
        self.cache = cache
        self.retry = retry
        self.prices = prices
        self._lock = threading.Lock()
        self.calls = 0
        self.cache_hits = 0
        self.spent_usd = 0.0

    @property
    def spec(self) -> str:
        return self.inner.spec

    def _priced(self, response: CoreResponse, cached: bool) -> CoreResponse:
        cost, _ = price_tokens(self.backend, self.model, response.input_tokens, response.output_tokens, self.prices)
        return dataclasses.replace(response, cost_usd=cost, cached=cached)

    def is_priced(self) -> bool:
        return price_tokens(self.backend, self.model, 0, 0, self.prices)[1]

    def complete(self, request: CoreRequest) -> CoreResponse:
        key = request_key(self.backend, self.model, request, PROMPT_VERSION) if self.cache is not None else None
        if key is not None:
            hit = self.cache.get(key)
            if hit is not None:
                with self._lock:
                    self.cache_hits += 1
                return self._priced(hit, cached=True)
        response = call_with_retries(lambda: self.inner.complete(request), self.retry,
                                     what=f"core {self.spec}")
        response = self._priced(response, cached=False)
        with self._lock:
            self.calls += 1
            self.spent_usd += response.cost_usd
        if key is not None:
            self.cache.put(key, response)
        return response

    def close(self) -> None:
        self.inner.close()

    # Pickling: the backend and the cache pickle themselves (lazily reconnecting); the counters
    # travel as a snapshot and then count the copy's own calls.
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


def make_core(spec: str | Core, *, cache: bool | str | ResponseCache | None = None,
              retry: RetryPolicy | None = None, timeout_s: float = 120.0,
              prices: dict[str, tuple[float, float]] | None = None) -> Core:
    """Build a core from a spec string (or wrap a :class:`Core`).

    ``cache``: None or True for the default on-disk cache, a path or a :class:`ResponseCache`,
    or False to turn caching off. A :class:`ManagedCore` is returned as it is unless ``cache`` or
    ``retry`` is given, in which case its backend is rewrapped with them.
    """
    if isinstance(spec, ManagedCore):
        if cache is None and retry is None:
            return spec
        return make_core(spec.inner, cache=spec.cache if cache is None else cache,
                         retry=retry or spec.retry, prices=prices or spec.prices)
    backend = spec if isinstance(spec, Core) else _build_backend(spec, timeout_s)
    if cache is None or cache is True:
        store = ResponseCache()
    elif cache is False:
        store = None
    elif isinstance(cache, ResponseCache):
        store = cache
    else:
        store = ResponseCache(cache)
    return ManagedCore(backend, cache=store, retry=retry or RetryPolicy(), prices=prices)
