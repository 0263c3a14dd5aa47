"""Where the ledger lives: a dict in this process, or a JSON file under ``flock`` shared by processes."""

from __future__ import annotations

import json
import logging
import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)

#: resources with a per-window limit, as named in the ledger and in :class:`LimiterStats`
RESOURCES = ("requests", "input_tokens", "output_tokens")


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def state_problem(state: object) -> str | None:
    """Why ``state`` is not a ledger this module wrote (valid JSON of another shape, a hand edit), or None.

    Checked on every read of a shared ledger: a wrong shape would fail every admission, forever."""
    if not isinstance(state, dict) or set(state) != set(_fresh_state()):
        return "not a rate-limit ledger"
    ledger, pending, server = state["ledger"], state["pending"], state["server"]
    if not isinstance(ledger, dict) or set(ledger) != set(RESOURCES):
        return "its ledger is not one table per resource"
    for table in ledger.values():
        if not isinstance(table, dict) or not all(str(k).lstrip("-").isdigit() and _finite(v) for k, v in table.items()):
            return "a ledger table holds something other than slot: amount"
    if not isinstance(pending, dict) or not all(
            isinstance(k, str) and isinstance(v, dict) and all(_finite(x) for x in v.values()) for k, v in pending.items()):
        return "its pending requests are not ticket: amounts"
    if not _finite(state["paused_until"]):
        return "paused_until is not a number"
    if not isinstance(server, dict) or not all(
            isinstance(v, list) and len(v) == 2 and all(_finite(x) for x in v) for v in server.values()):
        return "its server quotas are not [remaining, reset_at] pairs"
    return None


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
                    problem = state_problem(state)
                    if problem:
                        raise ValueError(problem)
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


# -- whose booking is it: a ticket names its process (pid, pid namespace, start time) and its age -------

#: a request in flight longer than this is taken as gone, whatever its process (a booking from another pid
#: namespace cannot be checked otherwise); far above any request timeout this package sets
MAX_PENDING_AGE_S = 900.0


def _own_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid").rpartition("[")[2].rstrip("]") or "-"
    except OSError:
        return "-"


def process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot, from /proc), "?" where /proc cannot say,
    None when there is no such process. A reused pid has another start time."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rpartition(b")")[2].split()
        return fields[19].decode()  # field 22 (starttime); the fields after the command start at field 3
    except FileNotFoundError:
        return None
    except (OSError, IndexError, UnicodeDecodeError):
        return "?" if _pid_alive(pid) else None


_NAMESPACE = _own_namespace()


def ticket_id(serial: str, now: float) -> str:
    """``pid:namespace:start:admitted_at:serial``: enough to tell a live booking from a dead process's."""
    pid = os.getpid()
    return f"{pid}:{_NAMESPACE}:{process_start(pid) or '?'}:{now:.3f}:{serial}"


def stale_ticket(ticket: str, now: float) -> bool:
    """Whether a booking in a shared ledger belongs to no live request: its process is gone (or its pid was
    reused: another start time), it is older than :data:`MAX_PENDING_AGE_S`, or it is in a form this
    version does not write (a ledger from an older one)."""
    parts = ticket.split(":")
    if len(parts) < 5:
        return True
    pid, namespace, start, admitted = parts[0], parts[1], parts[2], parts[3]
    try:
        pid_number, admitted_at = int(pid), float(admitted)
    except ValueError:
        return True
    if not math.isfinite(admitted_at) or now - admitted_at > MAX_PENDING_AGE_S:
        return True
    if namespace != _NAMESPACE or namespace == "-":  # another container's pid: only its age tells
        return False
    if pid_number == os.getpid():
        return start != (process_start(pid_number) or "?")
    current = process_start(pid_number)
    return current is None or (current != "?" and start != "?" and current != start)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
