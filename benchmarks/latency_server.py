"""A loopback OpenAI-compatible Chat Completions server that answers after a set latency.

For throughput benchmarks: every ``POST /v1/chat/completions`` is held for its latency, then
answered with a short GSM8K-style reply and a ``usage`` block. It records when each request
arrived and when its reply went out, so a benchmark can read the *span* (first arrival to last
reply) and the mean number of requests in flight from the server's side.

Latency: ``zero``, ``fixed:SECONDS`` or ``uniform:LO:HI`` (each request's latency drawn from a
hash of its body, so the same request gets the same latency in every run and for every client).

    python benchmarks/latency_server.py [--latency fixed:0.2]     # prints "PORT <n>", serves until killed

Control (JSON): ``POST /control/reset {"latency": "uniform:0.05:0.35"}`` sets the latency and clears
the records; ``GET /control/stats`` returns ``{"requests": [[arrival, reply, latency], …]}`` (seconds
on the server's monotonic clock). Runs in its own process, so its CPU is not the client's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REPLY = "Half of 48 is 24, and 48 + 24 = 72 clips in all. The answer is \\boxed{72}."


def parse_latency(text: str):
    """``zero`` / ``fixed:S`` / ``uniform:LO:HI`` → a function of the request body giving seconds."""
    kind, _, rest = text.partition(":")
    if kind == "zero":
        return lambda body: 0.0
    if kind == "fixed":
        seconds = float(rest)
        return lambda body: seconds
    if kind == "uniform":
        lo, hi = (float(x) for x in rest.split(":"))

        def uniform(body: bytes) -> float:
            u = int.from_bytes(hashlib.blake2b(body, digest_size=8).digest(), "big") / 2 ** 64
            return lo + (hi - lo) * u
        return uniform
    raise ValueError(f"latency {text!r}: expected zero, fixed:S or uniform:LO:HI")


class LatencyServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # 32 clients connecting at once must not wait on the listen backlog

    def __init__(self, latency: str = "zero", port: int = 0):
        self.latency_text = latency
        self.latency = parse_latency(latency)
        self.records: list[tuple[float, float, float]] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall
    server: LatencyServer

    def log_message(self, *args):
        pass

    def _send(self, code: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802
        if self.path == "/control/stats":
            with self.server.lock:
                records = list(self.server.records)
            return self._send(200, {"latency": self.server.latency_text, "requests": records})
        if self.path.rstrip("/").endswith("/models"):
            return self._send(200, {"object": "list", "data": [{"id": "bench", "object": "model"}]})
        self._send(404, {"error": {"message": "not found"}})

    def do_POST(self):  # noqa: N802
        arrival = time.monotonic()
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.path == "/control/reset":
            config = json.loads(body or b"{}")
            with self.server.lock:
                self.server.records.clear()
                if "latency" in config:
                    self.server.latency = parse_latency(config["latency"])
                    self.server.latency_text = config["latency"]
            return self._send(200, {"ok": True})
        if not self.path.endswith("/chat/completions"):
            return self._send(404, {"error": {"message": "not found"}})
        latency = self.server.latency(body)
        time.sleep(max(0.0, arrival + latency - time.monotonic()))
        request = json.loads(body or b"{}")
        prompt = sum(len(str(m.get("content", "")).split()) for m in request.get("messages", []))
        payload = {"id": "chatcmpl-bench", "object": "chat.completion", "created": int(time.time()),
                   "model": request.get("model", "bench"),
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY},
                                "finish_reason": "stop", "logprobs": None}],
                   "usage": {"prompt_tokens": prompt, "completion_tokens": 20, "total_tokens": prompt + 20}}
        self._send(200, payload)
        with self.server.lock:
            self.server.records.append((arrival, time.monotonic(), latency))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", default="zero")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = LatencyServer(args.latency, args.port)
    server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    print(f"PORT {server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.05)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        sys.stdout.flush()


if __name__ == "__main__":
    main()
