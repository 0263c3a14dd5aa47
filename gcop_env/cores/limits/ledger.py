"""Where the ledger lives: a dict in this process, or a JSON file under ``flock`` shared by processes."""

from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)

#: resources with a per-window limit, as named in the ledger and in :class:`LimiterStats`
RESOURCES = ("requests", "input_tokens", "output_tokens")


def _fresh_state() -> dict:
    # ledger: settled amounts per resource and slot; pending: each request in flight, "pid:n" ->
    # its booked amounts, which count in full until it is settled however long it takes
    return {"ledger": {r: {} for r in RESOURCES}, "pending": {}, "paused_until": 0.0, "server": {}}


class _MemoryStore:
    """The ledger of one process: a dict, guarded by the limiter's lock."""

    shared = False
    path = None

    def __init__(self) -> None:
        self.state = _fresh_state()

    @contextmanager
    def transaction(self) -> Iterator[dict]:
        yield self.state


class _FileStore:
    """The ledger in a JSON file, read and rewritten in place under an exclusive ``flock``.

    Every reader holds the lock, so the write needs no rename (a rename costs milliseconds on some
    file systems). The file is opened per transaction (not kept open) so that a forked child never
    shares the parent's lock. An unreadable file (a crash mid-write) starts a fresh ledger.
    """

    shared = True

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def transaction(self) -> Iterator[dict]:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = b""
            while chunk := os.read(fd, 1 << 20):
                raw += chunk
            state = _fresh_state()
            if raw:
                try:
                    state = json.loads(raw)
                    if not isinstance(state, dict) or set(state) != set(_fresh_state()):
                        raise ValueError("not a rate-limit ledger")
                except ValueError as exc:
                    log.warning("rate-limit ledger %s unreadable (%s); starting a fresh one", self.path, exc)
                    state = _fresh_state()
            yield state
            data = json.dumps(state, separators=(",", ":")).encode()
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, data)
            os.ftruncate(fd, len(data))
        finally:
            os.close(fd)  # releases the flock


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
