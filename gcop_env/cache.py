"""A persistent on-disk cache of core responses, so that a re-run costs no API calls.

Keyed by backend, model, sampling parameters, the prompt version, the full messages and the
sample index. Only successful responses are stored: failures are never cached. SQLite in WAL
mode, so several threads and processes (e.g. ``accelerate launch``) can share one file.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from dataclasses import asdict
from pathlib import Path

from gcop_env.cores.base import CoreRequest, CoreResponse


def default_cache_dir() -> Path:
    """``$GCOP_CACHE_DIR``, else ``$XDG_CACHE_HOME/gcop_env``, else ``~/.cache/gcop_env``."""
    if os.environ.get("GCOP_CACHE_DIR"):
        return Path(os.environ["GCOP_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "gcop_env"


def request_key(backend: str, model: str, request: CoreRequest, prompt_version: str) -> str:
    payload = {
        "backend": backend,
        "model": model,
        "sampling": request.sampling.as_dict(),
        "system": request.system,
        "messages": [[m.role, m.content] for m in request.messages],
        "sample_index": request.sample_index,
        "prompt_version": prompt_version,
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


class ResponseCache:
    """Maps request keys to stored :class:`CoreResponse` values."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else default_cache_dir() / "responses.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._conn() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)"
            )
        self.hits = 0
        self.misses = 0

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60.0)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def get(self, key: str) -> CoreResponse | None:
        row = self._conn().execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        try:
            data = json.loads(row[0])
            response = CoreResponse(**data)
        except (ValueError, TypeError):
            self.misses += 1  # a damaged entry is a miss, and is overwritten by the next put
            return None
        self.hits += 1
        return response

    def put(self, key: str, response: CoreResponse) -> None:
        data = asdict(response)
        data["cached"] = False
        with self._conn() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO responses (key, value, created) VALUES (?, ?, ?)",
                (key, json.dumps(data, ensure_ascii=False), time.time()),
            )

    def __len__(self) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def __deepcopy__(self, memo: dict) -> "ResponseCache":
        return self  # one store, shared (gym.make deep-copies its kwargs)

    # Pickling sends the path: SQLite connections belong to one thread of one process, so the
    # copy opens its own on first use (WAL mode lets the processes share the file).
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_local"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
