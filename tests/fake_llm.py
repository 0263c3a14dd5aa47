"""Fake Anthropic Messages and OpenAI Chat Completions servers on loopback.

The real ``anthropic`` and ``openai`` SDKs talk to them over HTTP. A test gives a ``responder``
(the last user message's text -> the reply text) and can queue faults: an HTTP status with
headers (429 with retry-after, 529, 500), a slow reply (client timeout), a malformed body, or a
dropped connection. Every request that reaches the server whole is recorded (one whose body never
fully arrived, e.g. from a client killed mid-send, is dropped as a real server would drop it). A
``gate`` (called once per request, under the server's lock) can refuse requests itself, e.g. a rate
limit; ``reply_headers`` (a dict, or a callable giving one) are sent with every successful reply;
``edit_reply`` (a callable taking the reply's JSON object and returning the one to send) bends a
successful reply, e.g. a negative token count or a message without content. :meth:`wait_idle`
waits until no request is being handled (the requests of a killed client have all been seen).
"""

from __future__ import annotations

import json
import select
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


@dataclass
class Fault:
    kind: str  # "status", "slow", "malformed", "drop"
    status: int = 500
    headers: dict = field(default_factory=dict)
    delay_s: float = 0.0
    error_type: str = "fault"  # the provider's error type in the body, e.g. "not_found_error"
    message: str = ""


def status(code: int, **headers: str) -> Fault:
    return Fault("status", status=code, headers={k.replace("_", "-"): v for k, v in headers.items()})


def api_error(code: int, error_type: str, message: str) -> Fault:
    """An error reply as the provider words it, e.g. ``api_error(404, "not_found_error", "model: x")``."""
    return Fault("status", status=code, error_type=error_type, message=message)


def slow(delay_s: float) -> Fault:
    return Fault("slow", delay_s=delay_s)


def malformed() -> Fault:
    return Fault("malformed")


def drop() -> Fault:
    return Fault("drop")


class SlidingWindowLimit:
    """A ``gate`` that enforces a provider-style rate limit: at most ``limit`` requests arrive in
    any ``window_s``; beyond it, a 429 whose ``retry-after`` says when the oldest one leaves the
    window. Refused requests do not count. ``most_in_window`` is the busiest window seen."""

    def __init__(self, limit: int, window_s: float):
        self.limit, self.window_s = limit, window_s
        self.arrivals: deque[float] = deque()
        self.admitted = self.refused = self.most_in_window = 0

    def __call__(self) -> Fault | None:
        now = time.monotonic()
        while self.arrivals and self.arrivals[0] <= now - self.window_s:
            self.arrivals.popleft()
        if len(self.arrivals) >= self.limit:
            self.refused += 1
            return status(429, retry_after=f"{self.arrivals[0] + self.window_s - now:.3f}")
        self.arrivals.append(now)
        self.admitted += 1
        self.most_in_window = max(self.most_in_window, len(self.arrivals))
        return None


def _words(text: str) -> int:
    return max(1, len(text.split()))


class _Server(ThreadingHTTPServer):
    # socketserver listens with a backlog of 5: 16 client threads connecting at once on a loaded
    # machine overflow it, and the kernel's SYN cookies then answer a connection it drops (a reset
    # the client sees as a failed attempt, which a retry makes up for but a test counting attempts
    # would not). A real server's backlog is far larger.
    request_queue_size = 128

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.busy = 0  # connections accepted and not yet done with (counted from the accept on)
        self.idle = threading.Condition()

    def get_request(self):
        with self.idle:  # accepted and counted at once: wait_idle never sees it in neither place
            conn = super().get_request()
            self.busy += 1
            return conn

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.idle:
                self.busy -= 1
                self.idle.notify_all()

    def pending(self) -> bool:
        """A connection waits in the listen backlog, not accepted yet."""
        return bool(select.select([self.socket], [], [], 0)[0])


class FakeLLMServer:
    """Serves ``POST /v1/messages`` (Anthropic) and ``POST /v1/chat/completions`` (OpenAI)."""

    def __init__(self, responder: Callable[[str], str] | None = None):
        self.responder = responder or (lambda prompt: "I think the answer is \\boxed{0}.")
        self.faults: deque[Fault | None] = deque()  # None: answer this request normally
        self.requests: list[dict] = []  # every request body received, faulted ones included
        self.gate: Callable[[], Fault | None] | None = None
        self.reply_headers: dict | Callable[[], dict] = {}
        self.edit_reply: Callable[[dict], dict] | None = None
        self.truncated = 0  # requests whose body never fully arrived (not recorded, not answered)
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body go out as two writes: with Nagle on, the body waits for the client's
            # delayed ACK (~40 ms per reply on loopback)
            disable_nagle_algorithm = True

            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):  # noqa: N802 - http.server's naming
                length = int(self.headers.get("content-length", 0))
                raw = self.rfile.read(length)
                if len(raw) < length:  # the client went away mid-request (e.g. killed): nothing to answer
                    with server._lock:
                        server.truncated += 1
                    self.close_connection = True
                    return
                body = json.loads(raw or b"{}")
                with server._lock:
                    server.requests.append({"path": self.path, "body": body, "headers": dict(self.headers)})
                    fault = server.faults.popleft() if server.faults else None
                    if fault is None and server.gate is not None:
                        fault = server.gate()
                if fault is not None and fault.kind == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if fault is not None and fault.kind == "slow":
                    time.sleep(fault.delay_s)
                if fault is not None and fault.kind == "status":
                    payload = {"type": "error", "error": {"type": fault.error_type,
                                                          "message": fault.message or f"injected {fault.status}"}}
                    return self._send(fault.status, json.dumps(payload).encode(), fault.headers)
                if fault is not None and fault.kind == "malformed":
                    return self._send(200, b'{"id": "msg_1", "content": [ this is not json')
                extra = server.reply_headers() if callable(server.reply_headers) else server.reply_headers
                if self.path.endswith("/messages"):
                    return self._send(200, json.dumps(server._edited(server._anthropic_reply(body))).encode(), extra)
                if self.path.endswith("/chat/completions"):
                    return self._send(200, json.dumps(server._edited(server._openai_reply(body))).encode(), extra)
                self._send(404, b'{"error": {"message": "not found"}}')

            def _send(self, code: int, payload: bytes, headers: dict | None = None):
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    # -- replies ------------------------------------------------------------------------------
    def _edited(self, reply: dict) -> dict:
        return self.edit_reply(reply) if self.edit_reply is not None else reply

    @staticmethod
    def _last_user_text(messages: list[dict]) -> str:
        for m in reversed(messages):
            if m.get("role") == "user":
                content = m.get("content")
                if isinstance(content, list):
                    return "".join(part.get("text", "") for part in content if isinstance(part, dict))
                return str(content)
        return ""

    def _anthropic_reply(self, body: dict) -> dict:
        prompt = self._last_user_text(body.get("messages", []))
        text = self.responder(prompt)
        return {"id": f"msg_{len(self.requests)}", "type": "message", "role": "assistant", "model": body.get("model"),
                "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": _words(prompt), "output_tokens": _words(text)}}

    def _openai_reply(self, body: dict) -> dict:
        prompt = self._last_user_text(body.get("messages", []))
        text = self.responder(prompt)
        return {"id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": _words(prompt), "completion_tokens": _words(text),
                          "total_tokens": _words(prompt) + _words(text)}}

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"

    def count(self, kind: str | None = None) -> int:
        """Requests received; ``kind`` "messages" or "chat" filters by API."""
        with self._lock:
            if kind is None:
                return len(self.requests)
            return sum(1 for r in self.requests if r["path"].endswith("/messages" if kind == "messages" else "/chat/completions"))

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Wait until no connection is being handled: every request of a client that is gone (killed,
        closed) has been read, recorded or dropped. A client still holding a connection open keeps the
        server busy. False when ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        while True:
            with self.httpd.idle:  # nothing being handled, and nothing waiting to be accepted
                if self.httpd.idle.wait_for(lambda: self.httpd.busy == 0, max(0.0, deadline - time.monotonic())) \
                        and not self.httpd.pending():
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    def __enter__(self) -> "FakeLLMServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
