"""Files a crash or Ctrl-C never leaves half-written, and JSONL that a killed run can resume from.

* :func:`write_text_atomic` / :func:`write_json` / :func:`replace_atomically`: the whole new file
  or the old one, never a mix (a temp file beside the target, fsynced, renamed over it).
* :class:`JsonlAppender` / :func:`read_jsonl_rows`: one fsynced JSON object per line; a torn last
  line (the writer was killed mid-line) is the only damage a reader forgives.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def replace_atomically(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path`` to write; on success it is fsynced and renamed over ``path``.

    Readers see the old file or the new one, never a mix; the parent directory is created, and
    the temp file is removed when the writing fails. The temp name ends with ``path``'s suffix
    (``np.savez`` and friends add their own suffix otherwise).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def utf8_safe(text: str) -> str:
    """``text`` as it can be written in UTF-8: a surrogate pair held as two code points becomes the
    character it encodes, a lone surrogate (``"\\ud800"`` from a model's reply, a file name's undecodable
    byte) becomes U+FFFD. Text that is already valid is returned as it is (the common case costs one check)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`replace_atomically`). Always writable: a lone
    surrogate is written as U+FFFD (:func:`utf8_safe`), never a crash after the work is done."""
    with replace_atomically(path) as tmp:
        tmp.write_text(utf8_safe(text), encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, payload: dict) -> Path:
    """``payload`` as indented, key-sorted JSON, written atomically."""
    return write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")



# -- one writer at a time ---------------------------------------------------------------------------

class InUse(RuntimeError):
    """Another process (or another open in this one) holds the lock of an output: a second run into
    it would pay for everything twice and interleave its rows."""


@contextmanager
def exclusive_use(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (a run dir, or an output file appended in place) for
    the block; :class:`InUse` at once when another holder has it.

    The kernel releases the lock when its holder ends, however it ends (SIGKILL included), so a
    killed run never leaves a stale lock behind. A directory is locked itself (no lock file in it);
    a file is created if missing. POSIX only (``fcntl``), like the rate-limit ledger.
    """
    import fcntl

    path = Path(path)
    if path.is_dir():
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    else:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InUse(f"{path} is in use by another {what} (it holds the lock until it ends): wait for it to "
                        f"finish, or choose another output") from None
        yield
    finally:
        os.close(fd)  # releases the lock


# -- JSONL ----------------------------------------------------------------------------------------

class DataError(ValueError):
    """A dataset could not be loaded, or one of its rows is malformed."""


class JsonlError(DataError):
    """A JSONL file has a bad line; the message names the file and the line."""

    def __init__(self, path: str | Path, line: int, problem: str):
        super().__init__(f"{path}: line {line} {problem}; fix or remove that line")
        self.path, self.line = str(path), line


def parse_jsonl_line(raw: bytes, path: str | Path, line: int) -> dict | None:
    """One JSONL line as a dict; None when blank. Bad UTF-8, bad JSON, a non-object or a lone
    surrogate in a string is a :class:`JsonlError` naming the file and line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonlError(path, line, f"is not valid UTF-8 (byte {exc.start})") from None
    if not text.strip():
        return None
    try:
        row = json.loads(text)
    except ValueError as exc:
        raise JsonlError(path, line, f"is not valid JSON ({getattr(exc, 'msg', exc)})") from None
    if not isinstance(row, dict):
        raise JsonlError(path, line, f"must be a JSON object, not {type(row).__name__}")
    if "\\u" in text and not _is_unicode(row):
        raise JsonlError(path, line, "holds a lone surrogate escape (e.g. \\ud800), not valid Unicode text")
    return row


def _is_unicode(row: Any) -> bool:
    try:
        json.dumps(row, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class JsonlAppender:
    """Appends one JSON object per line, written through to the OS at once, so a killed process
    loses no finished row; and fsynced, so a machine that crashes loses none either.

    Every row is writable: text that is not valid Unicode (a lone surrogate in a paid core reply) is
    written as U+FFFD (:func:`utf8_safe`), so the file stays valid UTF-8 that :func:`read_jsonl_rows`
    reads back. (Input files are the other way round: :func:`parse_jsonl_line` refuses such a line,
    naming it, since the user can fix it; a model's reply cannot be fixed, only kept.) The exact text
    stays in the response cache, which stores any string.

    ``fsync_every_s``: fsync at most this often (and at :meth:`close`), for a writer of many small
    rows whose answers are also kept elsewhere (``gcop eval``'s paid calls are in the response
    cache): a crash of the machine, not of the process, can then lose the rows of that last
    interval. 0 (the default): fsync every row. The file stays open between rows; it is reopened
    when the path no longer names it (replaced by an atomic rewrite, or removed).
    """

    def __init__(self, path: str | Path, *, default: Any = None, fsync_every_s: float = 0.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.default = default  # json.dumps's default= for values JSON cannot hold (e.g. str), else they raise
        self.fsync_every_s = fsync_every_s
        self._lock = threading.Lock()
        self._handle: Any = None
        self._synced = 0.0  # time.monotonic() of the last fsync
        self._unsynced = False

    def _open(self) -> Any:
        handle = self._handle
        if handle is not None:
            try:
                if os.stat(self.path).st_ino == os.fstat(handle.fileno()).st_ino:
                    return handle
            except OSError:
                pass
            self._close_handle()
        self._handle = open(self.path, "a", encoding="utf-8")
        return self._handle

    def append(self, row: dict) -> None:
        line = utf8_safe(json.dumps(row, ensure_ascii=False, default=self.default)) + "\n"
        with self._lock:
            handle = self._open()
            handle.write(line)
            handle.flush()
            now = time.monotonic()
            if now - self._synced >= self.fsync_every_s:
                os.fsync(handle.fileno())
                self._synced, self._unsynced = now, False
            else:
                self._unsynced = True

    def _close_handle(self) -> None:
        handle, self._handle = self._handle, None
        if handle is None:
            return
        try:
            if self._unsynced:
                os.fsync(handle.fileno())
                self._unsynced = False
        finally:
            handle.close()

    def close(self) -> None:
        """fsync what is not yet, and close the file (a later :meth:`append` opens it again)."""
        with self._lock:
            self._close_handle()

    def __enter__(self) -> "JsonlAppender":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_jsonl_rows(path: str | Path, repair: bool = False) -> list[dict]:
    """Rows of a JSONL file written by :class:`JsonlAppender`.

    Only a last line without its newline can be torn (the writer was killed mid-line): it is
    dropped when it does not parse, and cut off the file when ``repair`` is set (a last line that
    does parse is kept, and ``repair`` adds its newline). Any other bad line, the last complete
    one included, is a :class:`JsonlError` naming the file and the line: it is never cut.
    """
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    *complete, tail = data.split(b"\n")  # tail: the bytes after the last newline
    rows: list[dict] = []
    for number, raw in enumerate(complete, start=1):
        row = parse_jsonl_line(raw, path, number)
        if row is not None:
            rows.append(row)
    if tail:
        try:
            row = parse_jsonl_line(tail, path, len(complete) + 1)
        except JsonlError:
            row = None
        if row is not None:
            rows.append(row)
            if repair:
                with open(path, "ab") as fh:
                    fh.write(b"\n")
        elif repair:  # torn (or blank): cut, so the next appended row starts a clean line
            with open(path, "r+b") as fh:
                fh.truncate(len(data) - len(tail))
    return rows
