"""``anthropic:MODEL``: Claude through the official SDK's Messages API.

The SDK reads ``ANTHROPIC_API_KEY`` and ``ANTHROPIC_BASE_URL`` itself; we pass a base URL only
when the user gives one. The SDK's own retries are off: :mod:`gcop_env.cores.retry` does them,
so that every attempt is visible and the policy is one for all backends.

Sampling parameters: API version 2026-10-21 (the default of anthropic SDK >= 2.0) rejects
``temperature``, ``top_p`` and ``top_k``, and the SDK no longer takes them, so by default none is
sent and the model samples at its own default. ``anthropic:MODEL?api_version=2023-06-01`` pins the
older API version, which accepts them; then the env's ``temperature``/``top_p`` are sent.
"""

from __future__ import annotations

import threading
import time

from gcop_env.cores.base import Core, CoreRequest, CoreResponse


LEGACY_API_VERSION = "2023-06-01"


class AnthropicCore(Core):
    backend = "anthropic"

    @property
    def spec(self) -> str:
        return f"anthropic:{self.model}" + (f"?api_version={self._api_version}" if self._api_version else "")

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 timeout_s: float = 120.0, api_version: str | None = None):
        self.model = model
        self._api_version = api_version
        self._base_url = base_url
        self._api_key = api_key
        self._timeout_s = timeout_s
        self._client = None
        self._lock = threading.Lock()

    def _get_client(self):
        with self._lock:
            if self._client is None:
                import anthropic

                kwargs = {"max_retries": 0, "timeout": self._timeout_s}
                if self._base_url:
                    kwargs["base_url"] = self._base_url
                if self._api_key:
                    kwargs["api_key"] = self._api_key
                if self._api_version:
                    kwargs["default_headers"] = {"anthropic-version": self._api_version}
                self._client = anthropic.Anthropic(**kwargs)
            return self._client

    def complete(self, request: CoreRequest) -> CoreResponse:
        client = self._get_client()
        s = request.sampling
        kwargs = {
            "model": self.model,
            "max_tokens": s.max_tokens,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        }
        if self._api_version == LEGACY_API_VERSION:
            # Claude 4.x models also reject temperature and top_p together: send one.
            kwargs["extra_body"] = {"top_p": s.top_p} if s.top_p < 1.0 else {"temperature": s.temperature}
        if request.system:
            kwargs["system"] = request.system
        start = time.perf_counter()
        message = client.messages.create(**kwargs)
        latency = time.perf_counter() - start
        text = "".join(getattr(block, "text", "") for block in (message.content or []))
        usage = message.usage
        return CoreResponse(
            text=text,
            input_tokens=int(getattr(usage, "input_tokens", 0) or 0),
            output_tokens=int(getattr(usage, "output_tokens", 0) or 0),
            latency_s=latency,
            backend=self.backend,
            model=self.model,
            stop_reason=getattr(message, "stop_reason", None),
        )

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
