"""``openai:MODEL[@BASE_URL]``: any OpenAI-compatible Chat Completions server.

vLLM's ``vllm serve``, llama.cpp's server, or OpenAI itself. Without ``@BASE_URL`` the SDK reads
``OPENAI_BASE_URL`` and ``OPENAI_API_KEY`` as usual. Local servers usually need no key: when a base
URL is given and no key is set, a placeholder key is sent.
"""

from __future__ import annotations

import os
import time
from typing import Any

from gcop_env.cores.base import CoreRequest, CoreResponse, MalformedReply, SDKCore, token_count
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
        choices = getattr(completion, "choices", None)
        if not isinstance(choices, list) or not choices:
            raise MalformedReply("malformed reply: the server returned no choices")
        choice = choices[0]
        message = getattr(choice, "message", None)
        text = getattr(message, "content", None)
        if text is None:  # a refusal is the model's answer; no content and no refusal is not an answer
            text = getattr(message, "refusal", None)
        if not isinstance(text, str):
            raise MalformedReply(f"malformed reply: the message has no content (content={text!r:.80})")
        usage = getattr(completion, "usage", None)
        return CoreResponse(
            text=text,
            input_tokens=token_count(getattr(usage, "prompt_tokens", None), "prompt_tokens"),
            output_tokens=token_count(getattr(usage, "completion_tokens", None), "completion_tokens"),
            latency_s=latency,
            backend=self.backend,
            model=self.model,
            stop_reason=choice.finish_reason,
            sampling=self.sent_sampling(request.sampling),
            served_model=getattr(completion, "model", None),
        )
