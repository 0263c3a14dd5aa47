"""A minimal OpenAI-compatible chat server over any core: ``gcop serve chat hf:PATH --port 8001``.

For offline use of a local guide (or core) by tools that speak the OpenAI API, e.g. ``vf-eval``
and OpenEnv clients, without vLLM: ``POST /v1/chat/completions`` (non-streaming, ``n = 1``) and
``GET /v1/models``. Requests go through the core as any other call (the ``hf:`` backend serialises
generation on one model); ``temperature``, ``top_p`` and ``max_tokens`` (or
``max_completion_length``/``max_completion_tokens``) are honoured, ``seed`` picks the sample.
Listens on loopback by default. Not a production server: one process, one model.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from gcop_env.cores.base import Core, CoreError, CoreRequest, Message, SamplingParams


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


class ChatServer:
    """Serves ``core`` as ``model_name`` on ``host:port`` (port 0: a free one); ``with`` starts and stops it."""

    def __init__(self, core: Core, *, model_name: str | None = None, host: str = "127.0.0.1", port: int = 0,
                 max_tokens: int = 512):
        self.core = core
        self.model_name = model_name or core.spec
        self.max_tokens = max_tokens
        self.requests = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path.rstrip("/").endswith("/models"):
                    return self._send(200, {"object": "list", "data": [{"id": server.model_name, "object": "model"}]})
                self._send(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})

            def do_POST(self) -> None:  # noqa: N802
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    return self._send(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})
                try:
                    body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                    request = server.request_of(body)
                except (ValueError, TypeError, KeyError) as exc:
                    return self._send(400, {"error": {"message": str(exc), "type": "invalid_request_error"}})
                try:
                    response = server.core.complete(request)
                except CoreError as exc:
                    return self._send(502, {"error": {"message": str(exc), "type": "server_error"}})
                with server._lock:
                    server.requests += 1
                    number = server.requests
                finish = "length" if response.stop_reason == "length" else "stop"
                self._send(200, {
                    "id": f"chatcmpl-{number}", "object": "chat.completion", "created": int(time.time()),
                    "model": body.get("model") or server.model_name,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": response.text},
                                 "finish_reason": finish}],
                    "usage": {"prompt_tokens": response.input_tokens, "completion_tokens": response.output_tokens,
                              "total_tokens": response.input_tokens + response.output_tokens}})

            def _send(self, code: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                for name, value in (("content-type", "application/json"), ("content-length", str(len(data)))):
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = _Server((host, port), Handler)
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def request_of(self, body: dict) -> CoreRequest:
        """The core request for an OpenAI chat body (a ValueError for what this server cannot answer)."""
        if body.get("stream"):
            raise ValueError("streaming is not supported by this server; send stream=false")
        if int(body.get("n", 1)) != 1:
            raise ValueError("n must be 1")
        system, messages = None, []
        for m in body.get("messages") or []:
            content = m.get("content")
            if isinstance(content, list):
                content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
            if m.get("role") == "system":
                system = (system + "\n\n" if system else "") + str(content or "")
            elif m.get("role") in ("user", "assistant"):
                messages.append(Message(m["role"], str(content or "")))
        if not messages:
            raise ValueError("messages holds no user or assistant message")
        max_tokens = (body.get("max_tokens") or body.get("max_completion_tokens")
                      or body.get("max_completion_length") or self.max_tokens)
        sampling = SamplingParams(temperature=float(body.get("temperature") or 0.0),
                                  top_p=float(body.get("top_p") or 1.0), max_tokens=int(max_tokens))
        return CoreRequest(messages=tuple(messages), system=system or "", sampling=sampling,
                           sample_index=int(body.get("seed") or 0))

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> ChatServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
