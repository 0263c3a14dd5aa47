"""Black-box cores chosen by a spec string, behind one small interface.

``make_core("anthropic:claude-haiku-4-5-20251001")`` gives a :class:`ManagedCore`: the raw
backend plus retries, pricing, the on-disk response cache and in-flight de-duplication. Spec forms:

* ``anthropic:MODEL``                    Anthropic Messages API (official SDK)
* ``anthropic:MODEL?api_version=2023-06-01``  the same, on the API version that takes temperature
* ``openai:MODEL``                       OpenAI-compatible server from ``OPENAI_BASE_URL`` (or OpenAI)
* ``openai:MODEL@http://HOST:PORT/v1``   an explicit OpenAI-compatible server (vLLM, llama.cpp)
* ``hf:PATH`` / ``hf:PATH?gguf_file=NAME``  a local transformers causal LM

A backend is one module (``anthropic_core.py``, ``openai_core.py``, ``hf_core.py``: a
:class:`~gcop_env.cores.base.Core` subclass); a new one is added there and in :func:`parse_core_spec`
/ ``_build_backend``. What wraps every backend lives beside them: ``managed.py``, ``cache.py``,
``budget.py``, ``retry.py``, ``limits/``, ``pricing.py``, ``models.py``, ``options.py``, ``preflight.py``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from gcop_env.cores.cache import ResponseCache
from gcop_env.cores.base import (Core, CoreError, CoreRequest, CoreResponse, FatalCoreError, Message,
                                 SamplingParams)
from gcop_env.cores.limits import RateLimits
from gcop_env.cores.managed import ManagedCore
from gcop_env.cores.models import DEFAULT_CORE, DEFAULT_TEACHER
from gcop_env.cores.pricing import set_price
from gcop_env.cores.retry import RetryPolicy

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


def check_environment() -> None:
    """Read every environment variable the cores read: the rate limits (``GCOP_RPM``, ``GCOP_ITPM``,
    ``GCOP_OTPM``, ``GCOP_RATE_LIMITS``, ``GCOP_RATE_LIMIT_DIR``), the process cap
    (``GCOP_MAX_CONCURRENCY``), the prices (``GCOP_PRICES``) and the launcher's ``RANK``. A malformed one
    raises :class:`~gcop_env.utils.environ.EnvVarError` naming it, before any work (the ``gcop``
    commands call this first), instead of a traceback at the first call."""
    from gcop_env.cores.limits.config import check_env_limits
    from gcop_env.cores.pricing import _env_prices
    from gcop_env.utils.environ import env_int, env_limit

    check_env_limits()
    env_limit("GCOP_MAX_CONCURRENCY", what="requests in flight in this process", integer=True)
    _env_prices()
    env_int("RANK", 0)


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
    :class:`gcop_env.cores.budget.Budget` that every real call of the core must fit. A
    :class:`ManagedCore` is returned as it is unless ``cache``, ``retry``, ``limits`` or ``budget``
    is given, in which case its backend is rewrapped with them.
    """
    retry = RetryPolicy.coerce(retry)  # a dict of its fields too; a bad policy fails here, not at a call
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
