"""Preflight: one tiny call per model spec, before a run spends anything.

``gcop check SPEC...`` (:mod:`gcop_env.cli.check`; :func:`preflight` from Python, which ``gcop curate`` / ``grpo`` /
``eval`` run first) reports for each core, judge, teacher or guide spec: whether it is reachable,
the model id the server answered with, whether the sampling parameters are sent and accepted,
the price, and whether the model is retired or about to be. The call is never cached (a cached
answer would prove nothing) and costs a few tokens.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, Sequence

from gcop_env.cores import Core, CoreError, FatalCoreError, ManagedCore, RetryPolicy, make_core
from gcop_env.cores.base import CoreRequest, Message, SamplingParams
from gcop_env.cores.models import lifecycle
from gcop_env.cores.pricing import lookup_price

PROMPT = "Reply with the single word OK."
CHECK_MAX_TOKENS = 16
CHECK_RETRY = RetryPolicy(max_attempts=2, initial_backoff_s=0.5, max_backoff_s=2.0)
_SAMPLING_WORDS = ("temperature", "top_p", "top-p", "top_k", "sampling")


class CheckStatus(str, Enum):
    OK = "ok"
    CONFIG_ERROR = "config_error"  # retired/misspelt model, bad key, refused parameter: fix the spec
    UNREACHABLE = "unreachable"  # network or server trouble (after retries): may pass later
    BAD_SPEC = "bad_spec"  # not a valid spec string


@dataclass
class CheckResult:
    """What one tiny call showed about a spec."""

    spec: str
    status: CheckStatus
    message: str = ""
    model_id: str | None = None  # the model the server says answered
    sampling_sent: dict[str, Any] | None = None
    sampling_accepted: bool | None = None  # None: the backend sends no temperature / top_p
    sampling_note: str = ""
    price_per_mtok: tuple[float, ...] | None = None  # (input, output) USD; None: not in the price table
    lifecycle: str | None = None  # "retired on …, use …" / "deprecated, retires on …"
    latency_s: float | None = None
    reply: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status is CheckStatus.OK

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.status.value
        return d

    def lines(self) -> list[str]:
        price = ("not in the price table (counted as $0)" if self.price_per_mtok is None
                 else f"${self.price_per_mtok[0]:g} / ${self.price_per_mtok[1]:g} per MTok in/out")
        sampling = {True: "accepted", False: "REFUSED", None: "not sent"}[self.sampling_accepted]
        out = [f"{self.spec}: {self.status.value.upper()}" + (f" - {self.message}" if self.message else "")]
        if self.status is not CheckStatus.BAD_SPEC:
            out.append(f"    model id: {self.model_id or '?'}   latency: "
                       + (f"{self.latency_s:.2f}s" if self.latency_s is not None else "-"))
            out.append(f"    sampling: {sampling} {self.sampling_sent or ''} {self.sampling_note}".rstrip())
            out.append(f"    price: {price}")
        if self.lifecycle:
            out.append(f"    lifecycle: {self.lifecycle}")
        return out


class PreflightFailed(FatalCoreError):
    """A spec failed its preflight call: the run did not start, nothing was spent."""

    def __init__(self, results: Sequence[CheckResult]):
        failed = [r for r in results if not r.ok]
        lines = [line for r in failed for line in r.lines()]
        super().__init__("preflight failed for " + ", ".join(r.spec for r in failed) + " (nothing was spent; "
                         "fix the spec, or skip the check with --no-preflight):\n" + "\n".join(lines),
                         spec=failed[0].spec if failed else "", kind="preflight")
        self.results = list(results)


def _lifecycle_note(backend: str, model: str) -> str | None:
    entry = lifecycle(model) if backend == "anthropic" else None
    if entry is None:
        return None
    if entry.status == "retired":
        return f"retired on {entry.date}; use {entry.successor}"
    return f"deprecated, retires on {entry.date}; move to {entry.successor}"


def check_spec(spec: str | Core, sampling: SamplingParams | None = None, *, timeout_s: float = 60.0,
               retry: RetryPolicy = CHECK_RETRY) -> CheckResult:
    """One tiny, uncached call to ``spec`` with ``sampling``'s temperature / top-p."""
    sampling = sampling or SamplingParams()
    name = spec.spec if isinstance(spec, Core) else str(spec)
    owned = not isinstance(spec, Core)  # a core we were handed stays open (an hf model stays loaded)
    try:
        inner = spec.inner if isinstance(spec, ManagedCore) else spec
        core = make_core(inner, cache=False, retry=retry, timeout_s=timeout_s,
                         prices=spec.prices if isinstance(spec, ManagedCore) else None)
    except ValueError as exc:
        return CheckResult(name, CheckStatus.BAD_SPEC, message=str(exc))
    probe = SamplingParams(temperature=sampling.temperature, top_p=sampling.top_p, max_tokens=CHECK_MAX_TOKENS)
    sent = core.sent_sampling(probe)
    sends = bool({"temperature", "top_p"} & set(sent))
    price = lookup_price(core.backend, core.model, getattr(core, "prices", None))
    result = CheckResult(name, CheckStatus.OK, sampling_sent=sent, price_per_mtok=tuple(price[:2]) if price else None,
                         lifecycle=_lifecycle_note(core.backend, core.model))
    if not sends:
        result.sampling_note = ("(this API version takes no temperature / top_p: the model samples at its own "
                                "default, so runs are not deterministic"
                                + ("; append ?api_version=2023-06-01 to send them)" if core.backend == "anthropic"
                                   else ")"))
    request = CoreRequest(messages=(Message("user", PROMPT),), sampling=probe)
    start = time.perf_counter()
    try:
        response = core.complete(request)
    except FatalCoreError as exc:
        result.status = CheckStatus.CONFIG_ERROR
        result.message = str(exc)
        if exc.kind == "invalid_request" and sends and any(w in exc.provider_message.lower() for w in _SAMPLING_WORDS):
            result.sampling_accepted = False
            result.sampling_note = "(the model refuses these sampling parameters)"
        return result
    except CoreError as exc:  # after retries: the server is down or unreachable; else it failed outright
        result.status = CheckStatus.UNREACHABLE if exc.transient else CheckStatus.CONFIG_ERROR
        result.message = str(exc)
        return result
    except Exception as exc:  # noqa: BLE001 - e.g. a local model that fails to load
        result.status = CheckStatus.CONFIG_ERROR
        result.message = f"{type(exc).__name__}: {exc}"
        return result
    finally:
        if owned:
            core.close()
    result.latency_s = time.perf_counter() - start
    result.model_id = response.served_model or core.model
    result.reply = response.text[:80]
    result.sampling_accepted = True if sends else None
    return result


def preflight(specs: Sequence[str | Core | tuple[str | Core, SamplingParams | None]], *,
              timeout_s: float = 60.0) -> list[CheckResult]:
    """Check each spec (or ``(spec, sampling)`` pair) once; duplicates are checked once."""
    results: list[CheckResult] = []
    seen: dict[tuple, CheckResult] = {}
    for item in specs:
        spec, sampling = item if isinstance(item, tuple) else (item, None)
        if spec is None:
            continue
        key = (spec.spec if isinstance(spec, Core) else str(spec),
               None if sampling is None else (sampling.temperature, sampling.top_p))
        if key not in seen:
            seen[key] = check_spec(spec, sampling, timeout_s=timeout_s)
            results.append(seen[key])
    return results


def require_ready(specs: Sequence[str | Core | tuple[str | Core, SamplingParams | None]], *,
                  timeout_s: float = 60.0) -> list[CheckResult]:
    """:func:`preflight`, raising :class:`PreflightFailed` when any spec is not ready."""
    results = preflight(specs, timeout_s=timeout_s)
    if not all(r.ok for r in results):
        raise PreflightFailed(results)
    return results


def preflight_curate(config: Any, teacher: Core | None = None, core: Core | None = None) -> list[CheckResult]:
    """The preflight of ``gcop curate``: the teacher and the core, at the sampling the run uses."""
    return require_ready([
        (teacher or config.teacher, SamplingParams(config.teacher_temperature, 1.0)),
        (core or config.core, SamplingParams(config.core_temperature, config.core_top_p)),
    ], timeout_s=config.timeout_s)


def preflight_grpo(config: Any, scorer: Any = None) -> list[CheckResult]:
    """The preflight of ``gcop grpo``: the core, and the judge when the reward uses one."""
    core = scorer.core if scorer is not None else config.core
    items: list = [(core, SamplingParams(config.core_temperature, config.core_top_p))]
    if config.reward_gamma > 0:
        judge = scorer.judge.core if scorer is not None and scorer.judge is not None else (config.judge or config.core)
        items.append((judge, SamplingParams(0.0, 1.0)))
    return require_ready(items, timeout_s=config.timeout_s)
