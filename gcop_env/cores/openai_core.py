"""``openai:MODEL[@BASE_URL]``: any OpenAI-compatible Chat Completions server.

vLLM's ``vllm serve``, llama.cpp's server, or OpenAI itself. Without ``@BASE_URL`` the SDK reads
``OPENAI_BASE_URL`` and ``OPENAI_API_KEY`` as usual. Local servers usually need no key: when a base
URL is given and no key is set, a placeholder key is sent.
"""

from __future__ import annotations

import os
import time
from typing import Any

from gcop_env.cores.base import CoreRequest, CoreResponse, SDKCore
from gcop_env.cores.limits import report_headers


class OpenAICore(SDKCore):
    backend = "openai"
    base_url_env = "OPENAI_BASE_URL"
    default_base_url = "https://api.openai.com/v1"

    @property
    def spec(self) -> str:
        return f"openai:{self.model}@{self._base_url}" if self._base_url else f"openai:{self.model}"

    def _new_client(self, common: dict[str, Any]) -> Any:
        import openai

        api_key = self._api_key or os.environ.get("OPENAI_API_KEY")
        if api_key is None and (self._base_url or os.environ.get("OPENAI_BASE_URL")):
            api_key = "EMPTY"
        if api_key is not None:
            common["api_key"] = api_key
        return openai.OpenAI(**common)

    def complete(self, request: CoreRequest) -> CoreResponse:
        client = self._get_client()
        s = request.sampling
        messages = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        messages.extend({"role": m.role, "content": m.content} for m in request.messages)
        start = time.perf_counter()
        raw = client.chat.completions.with_raw_response.create(  # the raw reply carries the rate-limit headers
            model=self.model, messages=messages, temperature=s.temperature, top_p=s.top_p,
            max_tokens=s.max_tokens,
        )
        report_headers(raw.headers)
        completion = raw.parse()
        latency = time.perf_counter() - start
        if not completion.choices:
            raise ValueError("the server returned no choices")
        choice = completion.choices[0]
        usage = completion.usage
        return CoreResponse(
            text=choice.message.content or "",
            input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            latency_s=latency,
            backend=self.backend,
            model=self.model,
            stop_reason=choice.finish_reason,
            sampling=self.sent_sampling(request.sampling),
            served_model=getattr(completion, "model", None),
        )
