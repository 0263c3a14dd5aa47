"""The fake LLM server the suite's cores talk to: it must behave like a real server where a test's
outcome depends on it (a request that never fully arrived is not a request)."""

from __future__ import annotations

import json
import socket
import threading

from fake_llm import FakeLLMServer


def _send_raw(server: FakeLLMServer, body: bytes, length: int) -> None:
    """A client that sends the headers and ``body`` (claiming ``length`` bytes), then goes away."""
    host, port = server.httpd.server_address[:2]
    with socket.create_connection((host, port)) as conn:
        conn.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {length}\r\n\r\n".encode() + body)


def test_a_request_whose_body_never_arrives_is_not_recorded_or_answered():
    # A client killed between writing its headers and its body (the suite kills `gcop curate` runs on
    # purpose): a real server never hands such a request on. The old fake recorded it as `{}` and asked
    # its responder about an empty prompt, so a test reading the requests found one without `messages`.
    asked = []
    with FakeLLMServer(lambda prompt: asked.append(prompt) or "ok") as server:
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
        _send_raw(server, b"", len(body))  # the headers only
        _send_raw(server, body[:10], len(body))  # part of the body
        assert server.wait_idle(10)
        assert server.requests == [] and asked == [] and server.truncated == 2
        _send_raw(server, body, len(body))  # a whole one is recorded and answered
        assert server.wait_idle(10)
        assert [r["body"]["messages"][0]["content"] for r in server.requests] == ["hi"] and asked == ["hi"]


def test_wait_idle_waits_for_a_request_still_being_handled():
    release = threading.Event()
    with FakeLLMServer(lambda prompt: release.wait(30) and "ok") as server:
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
        _send_raw(server, body, len(body))  # its client is gone; the server is still answering it
        assert not server.wait_idle(0.3)
        release.set()
        assert server.wait_idle(10) and server.count() == 1
