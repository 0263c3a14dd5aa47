"""The sandbox contract: run a pytest file against candidate code, get a typed outcome.

Two backends implement :class:`Sandbox`: ``docker`` (:mod:`gcop_env.sandbox.docker_backend`,
real isolation, a warm pool of containers) and ``process``
(:mod:`gcop_env.sandbox.process_backend`, rlimits and a scrubbed environment only). Pick one with
:func:`gcop_env.sandbox.make_sandbox`.

Both run the same supervisor (:mod:`gcop_env.sandbox.supervisor`, shipped by :mod:`gcop_env.sandbox.bundle`) and read the verdict from the same
unforgeable report, so a pass means the same thing in both.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import struct
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_OUTPUT_LIMIT = 1 << 20  # bytes of stdout+stderr kept per run
DEFAULT_MEMORY_MB = 512
DEFAULT_PIDS_LIMIT = 128
GRACE_S = 10.0  # the worker enforces the timeout; the host waits this much longer before giving up

log = logging.getLogger("gcop_env.sandbox")

#: The whole environment a run sees (plus HOME, and TMPDIR in the process backend).
SANDBOX_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONHASHSEED": "0",
    "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
    "MPLBACKEND": "Agg",  # no display: matplotlib must never try a GUI backend
    # One thread per math library: a run has one CPU, and per-thread buffers would eat its
    # address-space limit on a many-core host.
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


RUNNERS = ("auto", "pytest")  # see PooledSandbox.runner
ISOLATIONS = ("auto", "in-process")  # see PooledSandbox.isolation
#: The two users of a sandbox's runs: the judge (the tests) and the candidate (the solution).
RUN_USERS = {"judge": [65533, 65533], "candidate": [65534, 65534]}


class SandboxError(RuntimeError):
    """The sandbox machinery failed (not the candidate): an infrastructure error."""


@dataclass(frozen=True)
class TestOutcome:
    """One collected test. ``outcome``: passed, failed, error, skipped or not_run."""

    __test__ = False  # not a pytest test class

    nodeid: str
    outcome: str
    message: str = ""


@dataclass(frozen=True)
class PytestOutcome:
    """What one pytest run in a sandbox produced.

    The counts come from the worker's private report, never from the candidate's output.
    ``infra_error`` set means the sandbox failed and nothing is known about the candidate.
    """

    collected: int = 0
    passed: int = 0
    failed: int = 0
    errors: int = 0  # setup/teardown errors and collection errors (e.g. the solution's import)
    skipped: int = 0
    not_run: int = 0  # collected but never finished (the process died or timed out first)
    complete: bool = False  # the report reached pytest's session end
    timed_out: bool = False
    exit_code: int | None = None  # of the pytest process; informative only
    signal: str | None = None  # that killed the pytest process, if any
    tests: tuple[TestOutcome, ...] = ()
    collect_errors: tuple[str, ...] = ()
    missing_tests: tuple[str, ...] = ()  # test functions in the file that were never collected
    tampered: tuple[str, ...] = ()  # why the report cannot be trusted, if it cannot (forged report lines)
    monitor: tuple[dict[str, Any], ...] = ()  # the runtime reward-hack monitor's findings (family, message, where)
    missing_modules: tuple[str, ...] = ()  # modules the tests import that the sandbox lacks (then infra_error)
    strays: int = 0  # processes that outlived pytest and were killed
    output: str = ""  # stdout+stderr, capped
    output_dropped: int = 0  # bytes beyond the cap
    duration_s: float = 0.0
    backend: str = ""
    host: str = ""  # the Docker engine that ran it, when a sandbox spans several (sandbox.hosts.DockerFleet)
    infra_error: str | None = None
    profile: dict[str, float] | None = None  # seconds per phase, when the sandbox's ``profile`` is on
    runner: str = ""  # "plain" (the worker's plain runner) or "pytest" (with why, when the plain runner handed over)
    # "trusted": the tests ran in a process of their own that the candidate's code could not reach
    # (docs/sandbox.md); "in-process": the tests and the candidate's code shared one process, guarded
    # by the runtime monitor; isolation_note says why (the test file's needs, or the sandbox's).
    isolation: str = ""
    isolation_note: str = ""

    @property
    def all_passed(self) -> bool:
        """The forge-proof pass rule: at least one test collected and every one passed."""
        return (
            self.infra_error is None
            and self.complete
            and not self.timed_out
            and not self.tampered
            and not self.monitor
            and not self.missing_tests
            and not self.collect_errors
            and self.collected >= 1
            and self.passed == self.collected
            and self.errors == 0
        )

    @property
    def pass_fraction(self) -> float:
        """Passed tests over collected tests (0 when nothing was collected or the report is forged)."""
        if self.collected == 0 or self.tampered or self.monitor or self.infra_error:
            return 0.0
        return self.passed / self.collected

    @classmethod
    def infra(cls, message: str, backend: str = "") -> "PytestOutcome":
        return cls(infra_error=message, backend=backend)

    @classmethod
    def from_worker(cls, message: Mapping[str, Any], backend: str) -> "PytestOutcome":
        if message.get("harness_error"):
            return cls.infra("sandbox worker failed: " + str(message["harness_error"]), backend)
        if message.get("missing_modules"):
            missing = tuple(str(m) for m in message["missing_modules"])
            return cls(
                infra_error=f"the sandbox cannot import {', '.join(missing)}, which the tests import: an environment "
                "defect, not a verdict on the answer (add the package to the image; `gcop sandbox check --data-files` "
                "lists a dataset's imports)",
                missing_modules=missing,
                backend=backend,
            )
        return cls(
            collected=int(message["collected"]),
            passed=int(message["passed"]),
            failed=int(message["failed"]),
            errors=int(message["errors"]),
            skipped=int(message["skipped"]),
            not_run=int(message["not_run"]),
            complete=bool(message["complete"]),
            timed_out=bool(message["timed_out"]),
            exit_code=message.get("exit_code"),
            signal=message.get("signal"),
            tests=tuple(TestOutcome(t["id"], t["outcome"], t.get("msg", "")) for t in message["tests"]),
            collect_errors=tuple(e["msg"] for e in message["collect_errors"]),
            missing_tests=tuple(message["missing_tests"]),
            tampered=tuple(message["tampered"]),
            monitor=tuple(dict(m) for m in message.get("monitor", ())),
            strays=int(message["strays"]),
            output=str(message["output"]),
            output_dropped=int(message["output_dropped"]),
            duration_s=float(message["duration_s"]),
            backend=backend,
            profile=dict(message["profile"]) if message.get("profile") else None,
            runner=str(message.get("runner", "")),
            isolation=str(message.get("isolation", "")),
            isolation_note=str(message.get("isolation_note", "") or ""),
        )

    def summary(self) -> dict[str, Any]:
        """A small JSON-able dict for logs and validation details."""
        return {
            "collected": self.collected,
            "passed": self.passed,
            "failed": self.failed,
            "errors": self.errors,
            "skipped": self.skipped,
            "not_run": self.not_run,
            "complete": self.complete,
            "timed_out": self.timed_out,
            "tampered": list(self.tampered),
            "monitor": list(self.monitor),
            "missing_modules": list(self.missing_modules),
            "missing_tests": list(self.missing_tests),
            "strays": self.strays,
            "duration_s": self.duration_s,
            "backend": self.backend,
            "runner": self.runner,
            "isolation": self.isolation,
            **({"isolation_note": self.isolation_note} if self.isolation_note else {}),
            **({"host": self.host} if self.host else {}),
        }


class Sandbox(ABC):
    """Runs untrusted code's tests. Thread-safe: several runs may be in flight at once."""

    kind: str = ""

    @abstractmethod
    def run_pytest(
        self,
        files: Mapping[str, str],
        timeout: float = DEFAULT_TIMEOUT_S,
        test_file: str = "test_solution.py",
    ) -> PytestOutcome:
        """Write ``files`` (name -> text) into a fresh work dir and run pytest on ``test_file``.

        Never raises for anything the candidate does; sandbox failures come back as an outcome
        with ``infra_error`` set.
        """

    def warm(self) -> None:
        """Start what a first run would otherwise start (pool members). Optional."""

    def close(self) -> None:
        """Stop everything this sandbox started."""

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------- talking to the worker


class WorkerDied(Exception):
    """The worker's channel closed (the worker or its container is gone)."""


class WorkerTimeout(Exception):
    """The worker did not answer in time."""


class WorkerChannel:
    """Length-prefixed JSON messages over a byte stream (see :mod:`gcop_env.sandbox.wire.framing`).

    ``read(n, deadline) -> bytes`` returns up to n bytes (b"" at end of stream) or raises
    :class:`WorkerTimeout`; ``write(data)`` sends bytes.
    """

    def __init__(self, read: Callable[[int, float], bytes], write: Callable[[bytes], None]) -> None:
        self._read = read
        self._write = write
        self._buffer = bytearray()

    def send(self, message: Mapping[str, Any]) -> None:
        body = json.dumps(message).encode("utf-8")
        try:
            self._write(struct.pack(">I", len(body)) + body)
        except OSError as exc:
            raise WorkerDied(f"cannot write to the sandbox worker: {exc}") from exc

    def receive(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        header = self._take(4, deadline)
        (size,) = struct.unpack(">I", header)
        body = self._take(size, deadline)
        try:  # a worker that sends what is not a JSON object is out of step or not ours: never trust it again
            message = json.loads(body.decode("utf-8"))
        except ValueError as exc:  # (UnicodeDecodeError and JSONDecodeError both are)
            raise WorkerDied(f"the sandbox worker sent a malformed message ({exc.__class__.__name__})") from None
        if not isinstance(message, dict):
            raise WorkerDied(f"the sandbox worker sent a {type(message).__name__}, not a message")
        return message

    def _take(self, n: int, deadline: float) -> bytes:
        while len(self._buffer) < n:
            try:
                chunk = self._read(max(n - len(self._buffer), 65536), deadline)
            except OSError as exc:
                raise WorkerDied(f"cannot read from the sandbox worker: {exc}") from exc
            if not chunk:
                raise WorkerDied("the sandbox worker exited")
            self._buffer += chunk
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data


@dataclass
class RunRequest:
    """One run for the worker."""

    files: Mapping[str, str]
    timeout: float
    test_file: str = "test_solution.py"
    output_limit: int = DEFAULT_OUTPUT_LIMIT
    extra: dict[str, Any] = field(default_factory=dict)

    def message(self) -> dict[str, Any]:
        for name in self.files:
            if not name or "/" in name or "\\" in name or name.startswith(".") or name == "conftest.py":
                raise ValueError(f"sandbox file names must be plain names (no paths, no conftest.py): {name!r}")
        if self.test_file not in self.files:
            raise ValueError(f"test file {self.test_file!r} is not among the files {sorted(self.files)}")
        return {
            "op": "run",
            "files": dict(self.files),
            "test_file": self.test_file,
            "timeout": float(self.timeout),
            "output_limit": int(self.output_limit),
            **self.extra,
        }


class Worker(Protocol):
    """A started fork server (a container or a host process) owned by a pool."""

    versions: dict[str, str]

    def run(self, request: RunRequest) -> dict[str, Any]:
        """Send one run and wait for its result message (raises WorkerDied / WorkerTimeout)."""

    def close(self) -> None:
        """Stop it and everything it started."""


class PooledSandbox(Sandbox):
    """A :class:`Sandbox` over a pool of warm fork servers (the two backends share this).

    A worker is reused only after a run that ended cleanly: a timeout, a process that outlived
    pytest, a work dir that could not be wiped or a dead worker gets it replaced.
    """

    def __init__(self, pool_size: int | None, output_limit: int, reuse: bool = True, runner: str = "auto",
                 isolation: str = "auto") -> None:
        if runner not in RUNNERS:
            raise ValueError(f"runner must be one of {', '.join(RUNNERS)}, not {runner!r}")
        if isolation not in ISOLATIONS:
            raise ValueError(f"isolation must be one of {', '.join(ISOLATIONS)}, not {isolation!r}")
        self.pool_size = max(1, int(pool_size or os.cpu_count() or 1))
        self.output_limit = int(output_limit)
        self.reuse = reuse
        self.profile = False  # ask workers for per-phase timings (benchmarks/bench_sandbox.py --profile)
        # "auto": the worker's plain runner for test files made of plain test functions, pytest for
        # the rest; "pytest": pytest for every file (same verdicts, slower: see sandbox/judge/plain_runner.py).
        self.runner = runner
        # "auto": trusted isolation wherever the test file allows it (and the sandbox has its two
        # users), the in-process fallback elsewhere; "in-process": every run in-process (the old
        # way; for comparisons). Each outcome says which it had (PytestOutcome.isolation).
        self.isolation = isolation
        self.versions: dict[str, str] = {}
        self._idle: queue.LifoQueue[Worker] = queue.LifoQueue()
        self._lock = threading.Lock()
        self._live = 0
        self._closed = False

    # -- for the backends ---------------------------------------------------------------------

    def _start_worker(self) -> Worker:
        """Start one worker; raise on failure (the message becomes an infra error)."""
        raise NotImplementedError

    def _engine_ok(self) -> bool:
        """After a worker died: is the machinery itself still fine (so the run is to blame)?"""
        return True

    def _discard(self, worker: Worker) -> None:
        worker.close()

    # -- the pool -----------------------------------------------------------------------------

    def _acquire(self) -> Worker:
        while True:
            try:
                return self._idle.get_nowait()
            except queue.Empty:
                pass
            with self._lock:
                if self._closed:
                    raise SandboxError("the sandbox is closed")
                grow = self._live < self.pool_size
                if grow:
                    self._live += 1
            if grow:
                try:
                    worker = self._start_worker()
                except BaseException:
                    with self._lock:
                        self._live -= 1
                    raise
                self.versions = dict(worker.versions)
                return worker
            try:
                return self._idle.get(timeout=0.5)
            except queue.Empty:
                continue

    def _release(self, worker: Worker, healthy: bool) -> None:
        with self._lock:
            keep = healthy and self.reuse and not self._closed
            if not keep:
                self._live -= 1
        if keep:
            self._idle.put(worker)
        else:
            self._discard(worker)

    def warm(self) -> None:
        if not self.reuse:
            return
        workers = []
        try:
            while len(workers) + self._idle.qsize() < self.pool_size:
                workers.append(self._acquire())
        finally:
            for worker in workers:
                self._release(worker, True)

    def run_pytest(
        self,
        files: Mapping[str, str],
        timeout: float = DEFAULT_TIMEOUT_S,
        test_file: str = "test_solution.py",
    ) -> PytestOutcome:
        extra: dict[str, Any] = {"runner": self.runner, "isolation": self.isolation}
        if self.profile:
            extra["profile"] = True
        request = RunRequest(files, timeout, test_file, self.output_limit, extra=extra)
        request.message()  # a bad file name is the caller's bug: raise now, not as infra
        for attempt in range(2):
            try:
                worker = self._acquire()
            except Exception as exc:
                return PytestOutcome.infra(f"cannot start a {self.kind} sandbox: {exc}", self.kind)
            sent = time.monotonic()
            try:
                reply = worker.run(request)
                if reply.get("profile"):  # the round trip beyond the worker's own time: transport
                    reply["profile"]["transport"] = max(0.0, time.monotonic() - sent - float(reply.get("duration_s", 0.0)))
                try:
                    outcome = PytestOutcome.from_worker(reply, self.kind)
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    raise WorkerDied(f"the sandbox worker sent a malformed result ({exc.__class__.__name__})") from None
            except WorkerTimeout:
                self._release(worker, False)
                return PytestOutcome(timed_out=True, backend=self.kind)
            except BaseException as exc:
                self._release(worker, False)  # whatever went wrong, the pool gets its member back (replaced)
                if not isinstance(exc, WorkerDied):
                    raise
                if not self._engine_ok():
                    return PytestOutcome.infra(f"the {self.kind} sandbox failed: {exc}", self.kind)
                if attempt == 0:  # once more on a fresh worker: a second death is the run's doing
                    log.info("sandbox worker died during a run (%s); retrying on a fresh one", exc)
                    continue
                # Not "tampered": nothing shows a trick, only that the run killed its sandbox twice.
                return PytestOutcome(backend=self.kind, signal=f"the sandbox died during the run ({exc})")
            healthy = (
                outcome.infra_error is None
                and bool(reply.get("clean"))
                and not outcome.timed_out
                and outcome.strays == 0
            )
            self._release(worker, healthy)
            return outcome
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            self._closed = True
        while True:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                break
            self._discard(worker)
