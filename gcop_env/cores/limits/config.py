"""Rate limits of one endpoint (:class:`RateLimits`) and the ones the environment sets
(``GCOP_RPM``, ``GCOP_ITPM``, ``GCOP_OTPM``, ``GCOP_RATE_LIMITS``, ``GCOP_RATE_LIMIT_DIR``)."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any

from gcop_env.utils.environ import EnvVarError, env_dir, env_limit

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
                number = None if value.lower() in {"off", "none", "unlimited"} else float(value)
            except ValueError:
                raise ValueError(f"invalid number {value!r} for {key} in rate limits {text!r}") from None
            if number == 0:  # 0 is no limit, as for GCOP_RPM (the README says so)
                number = None
            if number is not None and (not math.isfinite(number) or number < 1):
                raise ValueError(f"{key} must be a finite number >= 1, or 0 / off for no limit, got {value!r} in "
                                 f"{text!r}")
            if field_name == "max_concurrency" and number is not None:
                if number != int(number):
                    raise ValueError(f"concurrency must be a whole number, got {value!r} in {text!r}")
                number = int(number)
            changes[field_name] = number
        return dataclasses.replace(base, **changes)


# -- configuration from the environment --------------------------------------------------------

_WHAT = {"GCOP_RPM": "requests per minute", "GCOP_ITPM": "input tokens per minute",
         "GCOP_OTPM": "output tokens per minute"}


def _env_number(name: str) -> float | None:
    return env_limit(name, what=_WHAT.get(name, "a limit per minute"))


def env_limits(spec: str, backend_model: str) -> RateLimits:
    """The limits the environment sets for a remote endpoint.

    ``GCOP_RPM`` / ``GCOP_ITPM`` / ``GCOP_OTPM`` apply to every remote endpoint;
    ``GCOP_RATE_LIMITS="SPEC=rpm:50,itpm:50000;SPEC2=off"`` overrides them per core spec (the
    full spec, or ``backend:model`` for every base URL of that model). ``0`` or ``off`` is no limit.
    A malformed setting is an :class:`~gcop_env.utils.environ.EnvVarError` naming the variable.
    """
    limits = RateLimits(**{f: _env_number(var) for f, var in ENV_VARS.items()}, shared_dir=env_dir("GCOP_RATE_LIMIT_DIR"))
    overrides = _parse_overrides(os.environ.get("GCOP_RATE_LIMITS", ""))
    for key in (backend_model, spec):  # the exact spec wins over backend:model
        if key in overrides:
            limits = RateLimits.parse(overrides[key], base=limits)
    return limits


def check_env_limits() -> None:
    """Read every rate-limit variable once (``gcop`` commands call it before any work)."""
    for var in ENV_VARS.values():
        _env_number(var)
    env_dir("GCOP_RATE_LIMIT_DIR")
    _parse_overrides(os.environ.get("GCOP_RATE_LIMITS", ""))


def _parse_overrides(text: str) -> dict[str, str]:
    overrides = {}
    for entry in filter(None, (part.strip() for part in text.split(";"))):
        spec, sep, settings = entry.rpartition("=")  # a spec may hold "=" (?api_version=...), settings never
        if not sep or ":" not in spec:
            raise EnvVarError(f"invalid GCOP_RATE_LIMITS entry {entry!r}; expected SPEC=rpm:N,itpm:N,otpm:N,"
                              f"concurrency:N (entries separated by ';'), e.g. "
                              f"'anthropic:claude-haiku-4-5-20251001=rpm:50,itpm:50000'")
        try:
            RateLimits.parse(settings)  # a typo fails here, naming the entry, not at the first call
        except ValueError as exc:
            raise EnvVarError(f"GCOP_RATE_LIMITS entry {entry!r}: {exc}") from None
        overrides[spec.strip()] = settings
    return overrides
