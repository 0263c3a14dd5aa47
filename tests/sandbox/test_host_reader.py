"""The host's side of the worker protocol: a malformed message never hangs the pool.

The red team's ``server_protocol_pipe_malformed_message`` wrote bytes that are not JSON onto the
fork server's protocol pipe; the host's reader raised, the pool never got its member back, and the
validator's retry waited for one for ever. Under trusted isolation the candidate cannot reach that
pipe (tests/sandbox/attacks, both backends); here the host's reader itself is held to it: whatever a
worker sends, the run ends with a verdict and the pool replaces the worker.
"""

from __future__ import annotations

import json
import struct
import threading

import pytest

from gcop_env.sandbox.base import PooledSandbox, WorkerChannel, WorkerDied


def _channel(data: bytes) -> WorkerChannel:
    stream = bytearray(data)

    def read(n: int, deadline: float) -> bytes:
        chunk = bytes(stream[:n])
        del stream[:n]
        return chunk

    return WorkerChannel(read, lambda data: None)


def _frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


@pytest.mark.parametrize("body", [b"{not json" + bytes(range(128, 192)), b"\xff\xfe", b"[1, 2]", b"42", b"null"],
                         ids=["not-json", "not-utf8", "a-list", "a-number", "null"])
def test_a_malformed_message_is_a_dead_worker(body):
    with pytest.raises(WorkerDied, match="sent a"):
        _channel(_frame(body)).receive(5.0)


def test_a_well_formed_message_is_read():
    assert _channel(_frame(json.dumps({"op": "result", "passed": 1}).encode())).receive(5.0) == {"op": "result", "passed": 1}


GOOD_RESULT = {
    "collected": 1, "passed": 1, "failed": 0, "errors": 0, "skipped": 0, "not_run": 0, "complete": True,
    "timed_out": False, "exit_code": 0, "signal": None, "tests": [{"id": "t", "outcome": "passed", "msg": ""}],
    "collect_errors": [], "missing_tests": [], "tampered": [], "monitor": [], "strays": 0, "output": "",
    "output_dropped": 0, "duration_s": 0.01, "clean": True,
}


class _FakeWorker:
    versions = {"python": "3"}

    def __init__(self, reply):
        self.reply = reply
        self.closed = False

    def run(self, request):
        if isinstance(self.reply, BaseException):
            raise self.reply
        return self.reply


class _FakePool(PooledSandbox):
    kind = "fake"

    def __init__(self, replies):
        super().__init__(pool_size=1, output_limit=1000)
        self.replies = list(replies)
        self.started = 0
        self.discarded = 0

    def _start_worker(self):
        self.started += 1
        return _FakeWorker(self.replies.pop(0))

    def _discard(self, worker):
        self.discarded += 1


def _run_with_deadline(pool, seconds=60.0):
    done = {}
    thread = threading.Thread(target=lambda: done.setdefault("outcome", pool.run_pytest({"test_solution.py": "x"}, 5.0)),
                              daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "the pool hung after a malformed message"
    return done["outcome"]


@pytest.mark.parametrize("bad", [WorkerDied("the sandbox worker sent a malformed message (JSONDecodeError)"),
                                 {"collected": "many"}, {"tests": 3}, {}],
                         ids=["undecodable", "bad-count", "bad-tests", "empty"])
def test_a_malformed_result_twice_is_no_pass_and_no_hang(bad):
    pool = _FakePool([bad, bad])
    outcome = _run_with_deadline(pool)
    assert outcome.infra_error is None and outcome.passed == 0 and outcome.signal  # the run's doing, not infra
    assert pool.started == 2 and pool.discarded == 2 and pool._live == 0  # each member replaced, none leaked


def test_after_a_malformed_result_the_next_run_gets_a_fresh_worker():
    pool = _FakePool([{"collected": "many"}, dict(GOOD_RESULT), dict(GOOD_RESULT)])
    outcome = _run_with_deadline(pool)  # the retry on a fresh worker answers properly
    assert outcome.passed == 1 and outcome.complete
    assert _run_with_deadline(pool).passed == 1  # and the pool still serves (the good member was kept)
    assert pool.started == 2 and pool.discarded == 1


def test_an_unexpected_error_in_a_run_still_returns_the_member():
    pool = _FakePool([RuntimeError("a bug of ours"), dict(GOOD_RESULT)])
    with pytest.raises(RuntimeError):
        pool.run_pytest({"test_solution.py": "x"}, 5.0)
    assert pool._live == 0 and pool.discarded == 1
    assert _run_with_deadline(pool).passed == 1  # the next run is not left waiting for the lost member
