"""Stopping on Ctrl-C / SIGTERM: the flag, the handlers, and no new work submitted after it."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from gcop_env.utils.interrupt import StopRequest, completed_until_stopped, stop_on_signal


def test_completed_until_stopped_submits_no_more_after_stop():
    from concurrent.futures import ThreadPoolExecutor

    stop = StopRequest(grace_s=2.0)
    started: list[int] = []

    def work(i: int) -> int:
        started.append(i)
        if i == 5:
            stop.request("test")
        time.sleep(0.05)
        return i

    with ThreadPoolExecutor(2) as pool:
        done = [item for item, future in completed_until_stopped(pool, work, range(100), stop, max_in_flight=2)]
    assert stop.requested and len(started) <= 8  # 100 queued, only the in-flight ones ran
    assert set(done) == set(started)  # in-flight calls finished within the grace period and were yielded


def test_completed_until_stopped_abandons_calls_past_the_grace_period():
    from concurrent.futures import ThreadPoolExecutor

    stop = StopRequest(grace_s=0.2)
    release = threading.Event()

    def work(i: int) -> int:
        if i == 1:
            stop.request("test")
            release.wait(10)  # stuck, e.g. in a retry backoff
        return i

    pool = ThreadPoolExecutor(2)
    began = time.monotonic()
    done = [item for item, _ in completed_until_stopped(pool, work, range(10), stop, max_in_flight=2)]
    elapsed = time.monotonic() - began
    release.set()
    pool.shutdown(wait=True)
    assert 1 not in done and elapsed < 5


def test_stop_on_signal_sets_the_flag_and_restores_handlers():
    before = signal.getsignal(signal.SIGINT)
    with stop_on_signal(grace_s=1.0, announce=lambda text: None) as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.wait(5) and stop.signal_name == "SIGINT"
        with pytest.raises(KeyboardInterrupt):  # a second signal stops at once
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    assert signal.getsignal(signal.SIGINT) is before
