"""The registry: one limiter per endpoint in the process, made on first use, tightened when a
second core of the endpoint asks for lower limits."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Mapping
from typing import Any

from gcop_env.cores.limits import concurrency
from gcop_env.cores.limits.concurrency import max_concurrency
from gcop_env.cores.limits.config import RateLimits, env_limits
from gcop_env.cores.limits.limiter import EndpointLimiter
from gcop_env.utils.environ import env_dir

log = logging.getLogger(__name__)

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
        shared_dir=env_dir("GCOP_RATE_LIMIT_DIR"))
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
    with _registry_lock:
        _registry.clear()
    concurrency.reset()
