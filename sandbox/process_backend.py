"""The process sandbox: candidate code runs as a host process with limits. WEAKER ISOLATION.

For machines without Docker. Each pool member is a supervisor (:mod:`gcop_env.sandbox.supervisor`)
started with a scrubbed environment (no API keys, no ``PYTHON*``), stdin closed, in its own
session. Every run is forked into a fresh temp work dir, its own session and process group,
with rlimits on CPU time, address space, processes and file size, and is killed with all its
descendants (the worker is a child subreaper, so even double-forked daemons stay findable) at
the timeout. When the host process runs as root, runs also drop to ``nobody``.

Where the kernel has Landlock (Linux 5.13+, enabled), the processes that run candidate code read
only the Python installation, the system's libraries, ``/proc`` and a few ``/etc`` files, and write
only their own work dir (:mod:`gcop_env.sandbox.supervisor.landlock`); ``versions["filesystem"]``
says whether they are confined. Without Landlock a run can read whatever its user can read (a
dataset's test files included) and write where its user can write, e.g. ``/tmp``.

What it does NOT give you, unlike Docker: a private network (a run can open sockets), a private
process table (a run as the same user as the host could read the host process's
``/proc/PID/environ``; run as root, so that runs drop to ``nobody``, or use Docker), or a private
file system where the kernel lacks Landlock. Use it for trusted or semi-trusted code.

What it needs on the host: the fork servers run *this* Python (``python=`` to choose another), so
that interpreter must have pytest and every package the tasks' solutions and tests import. For
KodCode that is numpy, pandas, scipy, scikit-learn, matplotlib, sympy and networkx (the Docker
image has them; ``pip install numpy pandas scipy scikit-learn matplotlib sympy networkx`` here).
A package the *tests* import and this Python lacks makes the run ``infra`` (never ``fail``);
``gcop sandbox check --data-files F --sandbox process`` lists what a dataset needs and lacks.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import tempfile
import time

from gcop_env.sandbox.base import (
    DEFAULT_MEMORY_MB,
    DEFAULT_OUTPUT_LIMIT,
    DEFAULT_PIDS_LIMIT,
    GRACE_S,
    SANDBOX_ENV,
    RUN_USERS,
    PooledSandbox,
    RunRequest,
    WorkerChannel,
    WorkerDied,
    WorkerTimeout,
)
from gcop_env.sandbox.bundle import bundle_frame, sandbox_command

NOBODY = (65534, 65534)


def _scratch_dir() -> str | None:
    """Where runs' work dirs go: a memory file system when the host has one with room (a run's files
    are small, and creating and removing them there costs microseconds, not a disk's
    milliseconds), else the default temp dir."""
    try:
        stats = os.statvfs("/dev/shm")
        if stats.f_bavail * stats.f_frsize >= (256 << 20) and os.access("/dev/shm", os.W_OK | os.X_OK):
            return "/dev/shm"
    except OSError:
        pass
    return None


class _ProcessWorker:
    """One fork-server subprocess and its private channel."""

    def __init__(self, python: str, config: dict, start_timeout: float) -> None:
        self.base = tempfile.mkdtemp(prefix="gcop-sandbox-", dir=_scratch_dir())
        config = {**config, "base": self.base}
        self.proc = subprocess.Popen(
            sandbox_command(python, config),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=dict(SANDBOX_ENV),
            cwd=self.base,
            start_new_session=True,
            close_fds=True,
        )
        out_fd = self.proc.stdout.fileno()

        def read(n: int, deadline: float) -> bytes:
            wait = deadline - time.monotonic()
            ready, _, _ = select.select([out_fd], [], [], max(0.0, wait))
            if not ready:
                raise WorkerTimeout("the sandbox worker did not answer in time")
            return os.read(out_fd, n)

        def write(data: bytes) -> None:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()

        self.channel = WorkerChannel(read, write)
        try:
            write(bundle_frame())
            hello = self.channel.receive(start_timeout)
        except (WorkerDied, WorkerTimeout, OSError) as exc:
            self.close()
            raise WorkerDied(f"the process sandbox worker did not start: {exc}") from exc
        if hello.get("op") != "ready":
            self.close()
            raise WorkerDied(f"the process sandbox worker failed to start: {hello.get('error', hello)}")
        self.versions = {"python": hello.get("python"), "pytest": hello.get("pytest"), "plain_runner": hello.get("plain_runner"),
                         "isolation": hello.get("isolation"), "filesystem": hello.get("filesystem")}

    def run(self, request: RunRequest) -> dict:
        self.channel.send(request.message())
        return self.channel.receive(request.timeout + GRACE_S)

    def close(self) -> None:
        from gcop_env.sandbox.supervisor.procs import descendants

        # The supervisor's process group, and every process under it (the judge server and the runs
        # have process groups of their own).
        for pid in [self.proc.pid] + descendants(self.proc.pid):
            try:
                os.kill(pid, 9)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            os.killpg(self.proc.pid, 9)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.kill()
            self.proc.wait(timeout=5)
        except Exception:
            pass
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except Exception:
                pass
        shutil.rmtree(self.base, ignore_errors=True)


class ProcessSandbox(PooledSandbox):
    """Runs tests as host subprocesses with rlimits. See the module docstring for its limits.

    Args:
        pool_size: fork servers kept warm (default: the CPU count).
        memory_mb: address-space limit of a run.
        pids_limit: processes a run may add to its user's count (``RLIMIT_NPROC``).
        file_size_mb: largest file a run may write (``RLIMIT_FSIZE``).
        output_limit: bytes of stdout+stderr kept per run.
        python: interpreter of the fork servers; needs pytest (default: this one).
        drop_privileges: run candidates as ``nobody`` (default: when this process is root).
        runner: "auto" (default) runs test files made of plain test functions with the worker's
            plain runner and the rest with pytest; "pytest" runs every file with pytest (the same
            verdicts, about twice the CPU; see ``sandbox/judge/plain_runner.py``).
        isolation: "auto" (default): trusted isolation where the test file allows it; "in-process": none.
        confine: restrict the processes that run candidate code to the files they need with Landlock
            (default; see ``sandbox/supervisor/landlock.py``). Where the kernel has no Landlock the
            sandbox still runs, unconfined, and ``versions["filesystem"]`` says so.
    """

    kind = "process"

    def __init__(
        self,
        pool_size: int | None = None,
        memory_mb: int = DEFAULT_MEMORY_MB,
        pids_limit: int = DEFAULT_PIDS_LIMIT,
        file_size_mb: int = 16,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
        python: str | None = None,
        drop_privileges: bool | None = None,
        start_timeout: float = 60.0,
        runner: str = "auto",
        isolation: str = "auto",
        confine: bool = True,
    ) -> None:
        super().__init__(pool_size, output_limit, runner=runner, isolation=isolation)
        self.python = python or sys.executable
        self.start_timeout = start_timeout
        if drop_privileges is None:
            drop_privileges = os.geteuid() == 0
        self.drops_privileges = bool(drop_privileges)
        self.config = {
            "mode": "process",
            "env": dict(SANDBOX_ENV),
            "pids_limit": pids_limit,
            "users": RUN_USERS if drop_privileges else None,
            "confine": bool(confine),
            "rlimits": {
                "RLIMIT_AS": memory_mb << 20,
                "RLIMIT_FSIZE": file_size_mb << 20,
                "RLIMIT_NOFILE": 256,
            },
        }

    def _start_worker(self) -> _ProcessWorker:
        return _ProcessWorker(self.python, self.config, self.start_timeout)
