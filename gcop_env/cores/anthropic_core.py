"""``anthropic:MODEL``: Claude through the official SDK's Messages API.

The SDK reads ``ANTHROPIC_API_KEY`` and ``ANTHROPIC_BASE_URL`` itself; we pass a base URL only
when the user gives one.

Sampling parameters: API version 2026-10-21 (the default of anthropic SDK >= 2.0) rejects
``temperature``, ``top_p`` and ``top_k``, and the SDK no longer takes them, so by default none is
sent and the model samples at its own default. ``anthropic:MODEL?api_version=2023-06-01`` pins the
older API version, which accepts them; then the env's ``temperature``/``top_p`` are sent.
"""

from __future__ import annotations

import time
from typing import Any

from gcop_env.cores.base import CoreRequest, CoreResponse, SDKCore


LEGACY_API_VERSION = "2023-06-01"


class AnthropicCore(SDKCore):
    backend = "anthropic"

    @property
    def spec(self) -> str:
        return f"anthropic:{self.model}" + (f"?api_version={self._api_version}" if self._api_version else "")

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 timeout_s: float = 120.0, api_version: str | None = None):
        super().__init__(model, base_url=base_url, api_key=api_key, timeout_s=timeout_s)
        self._api_version = api_version

    def _new_client(self, common: dict[str, Any]) -> Any:
        import anthropic

        if self._api_key:
            common["api_key"] = self._api_key
        if self._api_version:
            common["default_headers"] = {"anthropic-version": self._api_version}
        return anthropic.Anthropic(**common)

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
