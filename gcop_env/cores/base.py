"""The black-box core contract: messages in, text plus tokens and latency out."""

from __future__ import annotations

import dataclasses
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
    """Sampling parameters sent to the core. Part of every cache key."""

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


@dataclass(frozen=True)
class CoreResponse:
    """What one core call produced and what it cost.

    ``cost_usd`` is the nominal price of the call (tokens times the price table) whether or not
    it came from the cache; ``cached`` says whether it was actually paid for this time.
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

    @property
    def spent_usd(self) -> float:
        return 0.0 if self.cached else self.cost_usd


class CoreError(RuntimeError):
    """A core call failed for infrastructure reasons (API down, retries exhausted, bad key).

    It is never a task outcome: callers report it as an infrastructure error, not a wrong answer.
    """

    def __init__(self, message: str, *, transient: bool = False, attempts: int = 1, cause: str | None = None):
        super().__init__(message)
        self.transient = transient
        self.attempts = attempts
        self.cause = cause


class Core(ABC):
    """A black-box LLM. Implementations must be safe to call from several threads."""

    backend: str = ""
    model: str = ""

    @property
    def spec(self) -> str:
        """The spec string that rebuilds this core, e.g. ``anthropic:claude-3-5-haiku-20241022``."""
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

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 timeout_s: float = 120.0):
        self.model = model
        self._base_url = base_url
        self._api_key = api_key
        self._timeout_s = timeout_s
        self._client = None
        self._lock = threading.Lock()

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

    # Pickling (Ray, multiprocessing, async vector envs): the SDK client holds sockets and the
    # lock cannot cross processes; the copy builds its own client on first use.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_client"] = None
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
