"""Stopping a long command cleanly on Ctrl-C or SIGTERM, without losing finished work.

A paid run (``gcop curate``, ``score``, ``eval``, ``grpo``) must not keep submitting requests after
the user asked it to stop, and must not lose what already finished. The first SIGINT/SIGTERM sets
a flag: the command stops submitting work, lets what is in flight finish for a few seconds
(``grace_s``), saves, prints how to resume and exits with status 130 (``gcop_env.cli.exit_codes``, the
shell's code for Ctrl-C). A second signal stops at once (the usual ``KeyboardInterrupt``). A call that
is only waiting (for a rate limit, or a retry's backoff) ends its wait at the first signal
(:func:`stop_signalled`, :func:`sleep_unless_stopped`): nothing was sent, and the re-run makes it.

Usage in a command::

    with stop_on_signal() as stop:
        for item, future in completed_until_stopped(pool, work, items, stop, max_in_flight=8):
            save(future.result())
    if stop.requested:
        print(stop.resume_hint("gcop curate ..."), file=sys.stderr)
        return exit_interrupted()  # gcop_env.cli.exit_codes
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from contextlib import contextmanager
from typing import Any, TypeVar

DEFAULT_GRACE_S = 5.0

T = TypeVar("T")

# Set by the first SIGINT/SIGTERM inside a stop_on_signal block (cleared when it ends): code that
# waits on something outside the process (a rate limit, a retry's backoff) reads it to end its wait,
# so one Ctrl-C stops a run that is only waiting, not after the wait (which may never end).
_signalled = threading.Event()


def stop_signalled() -> bool:
    """Whether the user asked the running command to stop (its first Ctrl-C / SIGTERM)."""
    return _signalled.is_set()


def sleep_unless_stopped(seconds: float) -> bool:
    """Sleep ``seconds`` (or until the user asks to stop); True when the sleep ended for a stop."""
    return _signalled.wait(max(0.0, seconds))


class StopRequest:
    """A flag set by the first SIGINT/SIGTERM (or by :meth:`request`, e.g. from a test)."""

    def __init__(self, grace_s: float = DEFAULT_GRACE_S):
        self.grace_s = grace_s
        self.signal_name: str | None = None
        self._event = threading.Event()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def is_set(self) -> bool:  # so a StopRequest can stand where a threading.Event is expected
        return self._event.is_set()

    def request(self, signal_name: str = "request") -> None:
        if not self._event.is_set():
            self.signal_name = signal_name
            self._event.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    def message(self, what: str = "the run") -> str:
        return (f"{self.signal_name or 'stop'} received: stopping {what} (no new work is submitted; "
                f"in-flight work gets {self.grace_s:g}s to finish). Press Ctrl-C again to stop at once.")


@contextmanager
def stop_on_signal(grace_s: float = DEFAULT_GRACE_S, what: str = "the run",
                   announce: Callable[[str], None] | None = None) -> Iterator[StopRequest]:
    """Within the block, the first SIGINT/SIGTERM sets the yielded :class:`StopRequest`.

    Only the main thread can install signal handlers; elsewhere (a worker thread, a notebook
    thread) the flag is still returned but only :meth:`StopRequest.request` sets it. The previous
    handlers are restored on exit.
    """
    stop = StopRequest(grace_s)
    say = announce or (lambda text: print(text, file=sys.stderr, flush=True))
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    previous: dict[int, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        if stop.requested:  # the second signal: stop now
            for sig, old in previous.items():
                signal.signal(sig, old)
            raise KeyboardInterrupt
        stop.request(signal.Signals(signum).name)
        _signalled.set()  # waits on a rate limit or a backoff end now
        say(stop.message(what))

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.getsignal(sig)
        signal.signal(sig, handler)
    try:
        yield stop
    finally:
        _signalled.clear()
        for sig, old in previous.items():
            signal.signal(sig, old)


def completed_until_stopped(pool: Executor, fn: Callable[[T], Any], items: Iterable[T], stop: StopRequest,
                            max_in_flight: int) -> Iterator[tuple[T, Future]]:
    """Run ``fn`` over ``items`` on ``pool``, yielding ``(item, future)`` as each finishes.

    At most ``max_in_flight`` calls are submitted at a time, so a stop leaves at most that many
    running (submitting everything up front would leave the whole queue to run). Once ``stop``
    is set nothing new is submitted; calls in flight get ``stop.grace_s`` seconds to finish and
    are yielded if they do; the rest are abandoned (their results are not yielded).
    """
    pending = iter(items)
    in_flight: dict[Future, T] = {}

    def fill() -> None:
        while not stop.requested and len(in_flight) < max(1, max_in_flight):
            item = next(pending, _END)
            if item is _END:
                return
            in_flight[pool.submit(fn, item)] = item

    fill()
    deadline: float | None = None
    while in_flight:
        if stop.requested and deadline is None:
            deadline = time.monotonic() + stop.grace_s
        timeout = 0.2 if deadline is None else max(0.0, deadline - time.monotonic())
        done, _ = wait(list(in_flight), timeout=timeout, return_when=FIRST_COMPLETED)
        for future in done:
            yield in_flight.pop(future), future
        if deadline is not None and time.monotonic() >= deadline:
            for future in in_flight:
                future.cancel()
            return
        fill()


_END: Any = object()
