"""``openai:MODEL[@BASE_URL]``: any OpenAI-compatible Chat Completions server.

vLLM's ``vllm serve``, llama.cpp's server, or OpenAI itself. Without ``@BASE_URL`` the SDK reads
``OPENAI_BASE_URL`` and ``OPENAI_API_KEY`` as usual. Local servers usually need no key: when a base
URL is given and no key is set, a placeholder key is sent.
"""

from __future__ import annotations

import os
import threading
import time

from gcop_env.cores.base import Core, CoreRequest, CoreResponse


class OpenAICore(Core):
    backend = "openai"

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 timeout_s: float = 120.0):
        self.model = model
        self._base_url = base_url
        self._api_key = api_key
        self._timeout_s = timeout_s
        self._client = None
        self._lock = threading.Lock()

    @property
    def spec(self) -> str:
        return f"openai:{self.model}@{self._base_url}" if self._base_url else f"openai:{self.model}"

    def _get_client(self):
        with self._lock:
            if self._client is None:
                import openai

                kwargs = {"max_retries": 0, "timeout": self._timeout_s}
                if self._base_url:
                    kwargs["base_url"] = self._base_url
                api_key = self._api_key or os.environ.get("OPENAI_API_KEY")
                if api_key is None and (self._base_url or os.environ.get("OPENAI_BASE_URL")):
                    api_key = "EMPTY"
                if api_key is not None:
                    kwargs["api_key"] = api_key
                self._client = openai.OpenAI(**kwargs)
            return self._client

    def complete(self, request: CoreRequest) -> CoreResponse:
        client = self._get_client()
        s = request.sampling
        messages = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        messages.extend({"role": m.role, "content": m.content} for m in request.messages)
        start = time.perf_counter()
        completion = client.chat.completions.create(
            model=self.model, messages=messages, temperature=s.temperature, top_p=s.top_p,
            max_tokens=s.max_tokens,
        )
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
        )

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
