"""The black-box core contract: messages in, text plus tokens and latency out."""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Message:
    role: str  # "user" or "assistant"
    content: str


@dataclass(frozen=True)
class SamplingParams:
    """Sampling parameters asked of the core.

    What a backend actually sends (:meth:`Core.sent_sampling`) may be less: the default Anthropic
    API version takes no temperature. The cache key and ``CoreResponse.sampling`` hold what was sent.
    """

    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 1024

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class CoreRequest:
    """One call to a core. ``sample_index`` tells apart repeated samples of the same request."""

    messages: tuple[Message, ...]
    system: str = ""
    sampling: SamplingParams = field(default_factory=SamplingParams)
    sample_index: int = 0


class MalformedReply(ValueError):
    """A reply that is not a valid answer: no content, or a token count that is not a count.

    The server answered (HTTP 200), so the call may have been billed, but nothing in it can be
    trusted: the answer is not scored (an infrastructure error, retried like a broken body), never
    cached, and a budget counts it at its worst case (:mod:`gcop_env.cores.budget`).
    """


def token_count(value: Any, what: str) -> int:
    """A token count as a server reports it: a non-negative whole number (``12`` or ``12.0``).

    Anything else (negative, NaN, infinite, fractional, a bool, a string, a list) is a
    :class:`MalformedReply` naming ``what``: a count of -100000 would turn into a negative cost and
    pay a budget back. ``None`` (no usage reported) counts 0, as it always did.
    """
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MalformedReply(f"malformed reply: usage {what} is {value!r}, not a token count")
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise MalformedReply(f"malformed reply: usage {what} is {value!r}, not a whole number of tokens")
    if value < 0:
        raise MalformedReply(f"malformed reply: usage {what} is {value!r}, a negative number of tokens")
    return int(value)


@dataclass(frozen=True)
class CoreResponse:
    """What one core call produced and what it cost.

    ``cost_usd`` is the nominal price of the call (tokens times the price table) whether or not
    it came from the cache; ``cached`` says whether it was actually paid for this time.

    Checked when made (a backend's reply, a cache entry replayed): ``text`` a string, the token
    counts non-negative integers, cost and latency finite and non-negative; else
    :class:`MalformedReply`. So no number downstream (costs, budgets, rate limits) is ever negative.
    """

    text: str
    input_tokens: int
    output_tokens: int
    latency_s: float
    backend: str
    model: str
    cost_usd: float = 0.0
    cached: bool = False
    stop_reason: str | None = None
    sampling: dict[str, Any] | None = None  # the sampling parameters actually sent (None: not recorded)
    served_model: str | None = None  # the model id the server says answered (may differ from an alias)
    priced: bool = True  # False: the model is not in the price table, so cost_usd is 0 by default

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise MalformedReply(f"malformed reply: its text is {type(self.text).__name__}, not a string")
        for name in ("input_tokens", "output_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise MalformedReply(f"malformed reply: usage {name} is {value!r}, not a token count")
        for name in ("cost_usd", "latency_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
                raise MalformedReply(f"malformed reply: {name} is {value!r}, not a finite number >= 0")

    @property
    def spent_usd(self) -> float:
        return 0.0 if self.cached else self.cost_usd


class CoreError(RuntimeError):
    """A core call failed for infrastructure reasons (API down, retries exhausted, a request too large).

    It is never a task outcome: callers report it as an infrastructure error, not a wrong answer.
    Its subclass :class:`FatalCoreError` (retired model, bad key) is not per step: it ends the run.
    """

    def __init__(self, message: str, *, transient: bool = False, attempts: int = 1, cause: str | None = None):
        super().__init__(message)
        self.transient = transient
        self.attempts = attempts
        self.cause = cause


class CallInterrupted(CoreError):
    """A call that was waiting (for a rate limit, a retry's backoff, the budget) when the user asked
    to stop (Ctrl-C / SIGTERM): nothing was sent for it. Not an outcome; the re-run makes the call."""

    def __init__(self, message: str):
        super().__init__(message, transient=False, attempts=0, cause="interrupted")


class FatalCoreError(CoreError):
    """A permanent configuration error: a retired or misspelt model, a bad key, no permission, or a
    request the provider refuses for every input (e.g. a sampling parameter the model rejects).

    Never retried and never a per-step infrastructure error: the first one stops the env step, the
    trainer or the command, because every later call would fail the same way.
    """

    def __init__(self, message: str, *, spec: str = "", kind: str = "", provider_message: str = "",
                 successor: str | None = None, status: int | None = None, attempts: int = 1):
        super().__init__(message, transient=False, attempts=attempts, cause=provider_message)
        self.spec = spec
        self.kind = kind  # "model_not_found", "authentication", "permission" or "invalid_request"
        self.provider_message = provider_message
        self.successor = successor
        self.status = status


class Core(ABC):
    """A black-box LLM. Implementations must be safe to call from several threads."""

    backend: str = ""
    model: str = ""

    def sent_sampling(self, sampling: SamplingParams) -> dict[str, Any]:
        """The sampling parameters this backend really sends for ``sampling`` (all of them by default)."""
        return sampling.as_dict()

    def is_deterministic(self, sampling: SamplingParams) -> bool:
        """True when repeating a request gives the same answer: temperature 0 is actually sent.

        A backend that cannot send a temperature (the default Anthropic API version) samples at the
        model's own default and is not deterministic, whatever ``sampling`` asks for.
        """
        sent = self.sent_sampling(sampling)
        return sent.get("temperature") == 0 or sent.get("do_sample") is False

    def cache_identity(self) -> dict[str, Any]:
        """What, beyond the model name, decides the answers: endpoint, API version, weights.

        Part of every cache key, so two servers (or two checkpoints) under one model name never
        share cached answers.
        """
        return {}

    @property
    def spec(self) -> str:
        """The spec string that rebuilds this core, e.g. ``anthropic:claude-haiku-4-5-20251001``."""
        return f"{self.backend}:{self.model}"

    @abstractmethod
    def complete(self, request: CoreRequest) -> CoreResponse:
        """Run one request. Raises :class:`CoreError` when it cannot."""

    def close(self) -> None:
        """Release clients and models."""

    def __deepcopy__(self, memo: dict) -> "Core":
        # A core is a shared connection (clients, a loaded model, a cache), not a value:
        # gym.make deep-copies its kwargs, and copies of an env must share the same core.
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"


class SDKCore(Core):
    """A core behind a vendor SDK client: made on first use (thread-safe), closed by :meth:`close`.

    The SDK's own retries are off (``max_retries=0``): :mod:`gcop_env.cores.retry` does them, so
    every attempt is visible and one policy serves all backends. Subclasses build the client in
    :meth:`_new_client` from the common keyword arguments.
    """

    #: environment variable the SDK reads its base URL from, and the URL it uses without one
    base_url_env: str = ""
    default_base_url: str = ""

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 timeout_s: float = 120.0):
        self.model = model
        self._base_url = base_url
        self._api_key = api_key
        self._timeout_s = timeout_s
        self._init_runtime()

    def _init_runtime(self) -> None:
        # The only unpicklable state: re-created after pickling or copying.
        self._client = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_client", None)
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._init_runtime()

    def resolved_base_url(self) -> str:
        """The base URL requests go to: the spec's, else the SDK's environment variable, else the default."""
        url = self._base_url or os.environ.get(self.base_url_env) or self.default_base_url
        return url.rstrip("/")

    def cache_identity(self) -> dict[str, Any]:
        return {"base_url": self.resolved_base_url()}

    @abstractmethod
    def _new_client(self, common: dict[str, Any]) -> Any:
        """Build the SDK client; ``common`` holds ``max_retries``, ``timeout`` and ``base_url`` if set."""

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                common: dict[str, Any] = {"max_retries": 0, "timeout": self._timeout_s}
                if self._base_url:
                    common["base_url"] = self._base_url
                self._client = self._new_client(common)
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
