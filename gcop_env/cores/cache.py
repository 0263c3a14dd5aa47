"""A persistent on-disk cache of core responses, so that a re-run costs no API calls.

Keyed by what decides an answer: backend, model, the endpoint and API version (or, for a local
model, a fingerprint of its weights), the sampling parameters actually sent, the prompt version,
the full messages and the sample index. Only successful responses are stored: failures are never
cached. SQLite in WAL mode, so several threads and processes (e.g. ``accelerate launch``) can share
one file.

The cache never costs a paid answer. A damaged file (not a database, failed integrity check,
another schema) is moved aside with a warning and a fresh one started; a cache that cannot be
written (read-only file or directory) is turned off with one warning; a write that fails later is
logged once and the response is still returned.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

from gcop_env.cores.base import CoreRequest, CoreResponse

log = logging.getLogger(__name__)

# Part of every cache key. It versions the prompts of gcop_env/step/prompts.py (which re-exports it):
# change a prompt, bump it, and old cached responses are no longer served for the new prompts.
PROMPT_VERSION = "gcop-prompts-v1"

SCHEMA = "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)"
_COLUMNS = ["key", "value", "created"]
_RESPONSE_FIELD_ORDER = tuple(f.name for f in fields(CoreResponse))
_RESPONSE_FIELDS = set(_RESPONSE_FIELD_ORDER)

# Files this process has already checked (path, inode, size, mtime): a full integrity check reads the
# whole file, so every env or core opening the same cache does not pay it again.
_checked: set[tuple[str, int, int, int]] = set()
_checked_lock = threading.Lock()


def default_cache_dir() -> Path:
    """``$GCOP_CACHE_DIR``, else ``$XDG_CACHE_HOME/gcop_env``, else ``~/.cache/gcop_env``."""
    if os.environ.get("GCOP_CACHE_DIR"):
        return Path(os.environ["GCOP_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "gcop_env"


def request_key(backend: str, model: str, request: CoreRequest, prompt_version: str, *,
                identity: dict[str, Any] | None = None, sampling: dict[str, Any] | None = None) -> str:
    """The cache key of ``request``.

    ``identity``: the endpoint / API version / weights fingerprint (:meth:`Core.cache_identity`).
    ``sampling``: the sampling parameters the backend actually sends (:meth:`Core.sent_sampling`);
    by default all of ``request.sampling``. Any ``str`` is accepted: a lone surrogate is hashed as
    is (``surrogatepass``), never a crash.
    """
    payload = {
        "backend": backend,
        "model": model,
        "identity": identity or {},
        "sampling": request.sampling.as_dict() if sampling is None else sampling,
        "system": request.system,
        "messages": [[m.role, m.content] for m in request.messages],
        "sample_index": request.sample_index,
        "prompt_version": prompt_version,
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8", "surrogatepass")
    return hashlib.sha256(blob).hexdigest()


class CacheUnavailable(Exception):
    """The cache file cannot be used; the message says why."""


class ResponseCache:
    """Maps request keys to stored :class:`CoreResponse` values.

    ``enabled`` is False when the file could not be opened or written: every ``get`` is then a
    miss and every ``put`` a no-op, so a run goes on without a cache rather than stopping.
    """

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else default_cache_dir() / "responses.sqlite"
        self.hits = 0
        self.misses = 0
        self.write_errors = 0
        self.enabled = True
        self.moved_aside: Path | None = None  # where a damaged file went
        self._init_runtime()
        self._open()

    # -- runtime state (re-created after pickling) ----------------------------------------------
    def _init_runtime(self) -> None:
        self._local = threading.local()
        self._counter_lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []  # every thread's, so close() closes them all
        self._write_warned = False

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        for name in ("_local", "_counter_lock", "_connections", "_write_warned"):
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._init_runtime()

    def __deepcopy__(self, memo: dict) -> "ResponseCache":
        return self  # one store, shared (gym.make deep-copies its kwargs)

    # -- opening --------------------------------------------------------------------------------
    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._check_or_create()
        except sqlite3.OperationalError as exc:  # read-only, locked beyond the timeout, cannot open
            self._disable(f"{type(exc).__name__}: {exc}")
        except sqlite3.DatabaseError as exc:  # not a database, corrupt, another schema
            try:
                self._move_aside(f"{type(exc).__name__}: {exc}")
                self._check_or_create()
            except (sqlite3.Error, OSError, CacheUnavailable) as again:
                self._disable(f"{type(again).__name__}: {again}")
        except (OSError, CacheUnavailable) as exc:
            self._disable(f"{type(exc).__name__}: {exc}")

    def _check_or_create(self) -> None:
        """Open, check integrity and schema, create the table, and prove a write works."""
        existed = self.path.exists() and self.path.stat().st_size > 0
        if existed:
            with _checked_lock:
                if self._stamp() in _checked:
                    existed = False  # checked already in this process: only the cheap steps below
        conn = sqlite3.connect(self.path, timeout=60.0)
        try:
            if existed:
                status = conn.execute("PRAGMA quick_check").fetchone()
                if not status or status[0] != "ok":
                    raise sqlite3.DatabaseError(f"integrity check failed: {status[0] if status else 'no result'}")
                columns = [row[1] for row in conn.execute("PRAGMA table_info(responses)")]
                if columns and columns != _COLUMNS:
                    raise sqlite3.DatabaseError(f"unexpected schema: table responses has columns {columns}, "
                                                f"expected {_COLUMNS}")
            conn.execute("PRAGMA journal_mode=WAL")
            with conn:
                conn.execute(SCHEMA)
                # a write that is rolled back: fails now, not after a paid call, on a read-only file
                conn.execute("INSERT OR REPLACE INTO responses (key, value, created) VALUES ('__probe__', '', 0)")
                conn.execute("DELETE FROM responses WHERE key = '__probe__'")
        finally:
            conn.close()
        with _checked_lock:
            _checked.add(self._stamp())

    def _stamp(self) -> tuple[str, int, int, int]:
        st = self.path.stat()
        return (str(self.path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)

    def _move_aside(self, reason: str) -> None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = self.path.with_name(f"{self.path.name}.damaged-{stamp}-{os.getpid()}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                try:
                    os.replace(src, Path(str(target) + suffix))
                except OSError as exc:
                    raise CacheUnavailable(f"damaged cache {self.path} ({reason}) could not be moved aside: {exc}") from exc
        self.moved_aside = target
        log.warning("response cache %s is damaged (%s); moved it to %s and started a fresh cache. Cached answers "
                    "in the old file are not used (they are kept there).", self.path, reason, target)

    def _disable(self, reason: str) -> None:
        self.enabled = False
        log.warning("response cache %s cannot be used (%s); continuing WITHOUT a cache: every request is paid "
                    "again. Point GCOP_CACHE_DIR (or --cache) at a writable directory to fix this.", self.path, reason)

    # -- access ---------------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60.0, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
            with self._counter_lock:
                self._connections.append(conn)
        return conn

    def _count(self, hit: bool) -> None:
        with self._counter_lock:
            if hit:
                self.hits += 1
            else:
                self.misses += 1

    def get(self, key: str) -> CoreResponse | None:
        if not self.enabled:
            self._count(False)
            return None
        try:
            row = self._conn().execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as exc:
            self._warn_once(f"reading from the cache failed ({type(exc).__name__}: {exc}); treating it as a miss")
            self._count(False)
            return None
        if row is None:
            self._count(False)
            return None
        try:
            raw = row[0]
            data = json.loads(raw.decode("utf-8", "surrogatepass") if isinstance(raw, bytes) else raw)
            response = CoreResponse(**{k: v for k, v in data.items() if k in _RESPONSE_FIELDS})
        except (ValueError, TypeError):
            self._count(False)  # a damaged entry is a miss, and is overwritten by the next put
            return None
        self._count(True)
        return response

    def put(self, key: str, response: CoreResponse) -> bool:
        """Store ``response``. Returns False (and logs once) when the write failed; never raises."""
        if not self.enabled:
            return False
        # the fields as they are (JSON copies them): dataclasses.asdict would deep-copy every one first
        data = {name: getattr(response, name) for name in _RESPONSE_FIELD_ORDER}
        data["cached"] = False
        try:
            # UTF-8 bytes with surrogatepass: any str (lone surrogates included) is stored exactly;
            # an ASCII \u escape would fuse an adjacent high + low surrogate into one character.
            value = json.dumps(data, ensure_ascii=False).encode("utf-8", "surrogatepass")
            with self._conn() as conn:
                conn.execute("INSERT OR REPLACE INTO responses (key, value, created) VALUES (?, ?, ?)",
                             (key, value, time.time()))
            return True
        except (sqlite3.Error, ValueError, TypeError) as exc:
            with self._counter_lock:
                self.write_errors += 1
            self._warn_once(f"writing to the cache failed ({type(exc).__name__}: {exc}); the response is used "
                            "but not stored, so a re-run pays for it again")
            return False

    def _warn_once(self, message: str) -> None:
        with self._counter_lock:
            if self._write_warned:
                return
            self._write_warned = True
        log.warning("response cache %s: %s", self.path, message)

    def __len__(self) -> int:
        if not self.enabled:
            return 0
        return self._conn().execute("SELECT COUNT(*) FROM responses WHERE key != '__probe__'").fetchone()[0]

    def close(self) -> None:
        """Close every thread's connection (not only the calling thread's)."""
        with self._counter_lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            try:
                conn.close()
            except sqlite3.Error:  # pragma: no cover - closing is best effort
                pass
        self._local = threading.local()
