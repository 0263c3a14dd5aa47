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

from gcop_env.cores.base import CoreRequest, CoreResponse, MalformedReply, SamplingParams, SDKCore, token_count
from gcop_env.cores.limits import report_headers


LEGACY_API_VERSION = "2023-06-01"


class AnthropicCore(SDKCore):
    backend = "anthropic"
    base_url_env = "ANTHROPIC_BASE_URL"
    default_base_url = "https://api.anthropic.com"

    @property
    def spec(self) -> str:
        return f"anthropic:{self.model}" + (f"?api_version={self._api_version}" if self._api_version else "")

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 timeout_s: float = 120.0, api_version: str | None = None):
        super().__init__(model, base_url=base_url, api_key=api_key, timeout_s=timeout_s)
        self._api_version = api_version

    def cache_identity(self) -> dict[str, Any]:
        # The API version decides whether temperature is applied at all: part of the key.
        return {"base_url": self.resolved_base_url(), "api_version": self._api_version or "sdk-default"}

    def sent_sampling(self, sampling: SamplingParams) -> dict[str, Any]:
        """Only ``max_tokens`` on the default API version; one of temperature / top_p on the legacy one."""
        sent: dict[str, Any] = {"max_tokens": sampling.max_tokens}
        if self._api_version == LEGACY_API_VERSION:
            # Claude 4.x models reject temperature and top_p together: send one.
            if sampling.top_p < 1.0:
                sent["top_p"] = sampling.top_p
            else:
                sent["temperature"] = sampling.temperature
        return sent

    def _new_client(self, common: dict[str, Any]) -> Any:
        import anthropic

        if self._api_key:
            common["api_key"] = self._api_key
        if self._api_version:
            common["default_headers"] = {"anthropic-version": self._api_version}
        return anthropic.Anthropic(**common)

    def complete(self, request: CoreRequest) -> CoreResponse:
        client = self._get_client()
        sent = self.sent_sampling(request.sampling)
        kwargs = {
            "model": self.model,
            "max_tokens": sent.pop("max_tokens"),
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        }
        if sent:
            kwargs["extra_body"] = sent  # the SDK no longer takes them as arguments
        if request.system:
            kwargs["system"] = request.system
        start = time.perf_counter()
        raw = client.messages.with_raw_response.create(**kwargs)  # the raw reply carries the rate-limit headers
        report_headers(raw.headers)
        message = raw.parse()
        latency = time.perf_counter() - start
        content = getattr(message, "content", None)
        if not isinstance(content, list):  # a 200 with `{}` or a message without content: not an answer
            raise MalformedReply(f"malformed reply: the message has no content list (content={content!r:.80})")
        texts = [getattr(block, "text", None) for block in content]
        if any(t is not None and not isinstance(t, str) for t in texts):
            raise MalformedReply("malformed reply: a content block's text is not a string")
        usage = getattr(message, "usage", None)
        return CoreResponse(
            text="".join(t for t in texts if t),
            input_tokens=token_count(getattr(usage, "input_tokens", None), "input_tokens"),
            output_tokens=token_count(getattr(usage, "output_tokens", None), "output_tokens"),
            latency_s=latency,
            backend=self.backend,
            model=self.model,
            stop_reason=getattr(message, "stop_reason", None),
            sampling=self.sent_sampling(request.sampling),
            served_model=getattr(message, "model", None),
        )
