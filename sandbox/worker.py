"""The program that runs inside a sandbox: a pytest fork server.

It starts once (inside a Docker container as PID 1, or as a host subprocess for the process
backend), imports pytest, then serves runs: for each request it writes the files into a fresh
work dir, forks a child that runs pytest on them, enforces the wall-clock timeout, kills every
process the run left behind, wipes the work dir and answers with one result message. Forking
from a process that already imported pytest is what makes a validation cost tens of
milliseconds instead of a second.

Why the verdict cannot be forged by the candidate's code (which runs inside the pytest child):

* The result is built from a report that a pytest plugin (:class:`_Reporter`, registered before
  any candidate code is imported) writes to a private pipe. Every line carries a per-run random
  nonce; a line without it marks the run as tampered. The child's stdout/stderr is only kept as
  text for humans and is never parsed, and its exit code alone never makes a pass.
* A pass needs the session's final record, every collected test passed (setup, call and
  teardown), no collection error, and every test function that the test file defines (read
  with ``ast`` *before* the run) among the collected ones. ``os._exit(0)``/``sys.exit(0)``
  leave the report without its final record or turn collection into an error.
* pytest runs with ``--noconftest``, plugin autoload disabled, ``-p no:cacheprovider``, and an
  explicit empty ini file and rootdir, so files the candidate plants cannot configure it.

The limit: the candidate's code shares the pytest process, so code written to attack this
harness on purpose (reading the nonce out of the interpreter's memory, patching pytest's
internals) could forge a report. That is true of every harness that imports the solution into
the test process, KodCode's own included.

The protocol with the host: 4-byte big-endian length + UTF-8 JSON, both ways, on the fds that
were stdin/stdout at start (they are moved away so the candidate never sees them).

Stdlib and pytest only: this file is shipped into the sandbox as source (``python3 -I -c``).
"""

import ast
import json
import os
import select
import shutil
import signal
import struct
import sys
import time
import traceback

_CHUNK = 65536
_REPORT_LIMIT = 8 << 20  # bytes of report a run may produce before it counts as tampering
_MESSAGE_LIMIT = 4000  # characters kept per failure message


# --------------------------------------------------------------------------- protocol


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _read_exact(fd, n):
    chunks = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _send(fd, message):
    body = json.dumps(message).encode("utf-8")
    _write_all(fd, struct.pack(">I", len(body)) + body)


def _recv(fd):
    header = _read_exact(fd, 4)
    if header is None:
        return None
    (size,) = struct.unpack(">I", header)
    body = _read_exact(fd, size)
    if body is None:
        return None
    return json.loads(body.decode("utf-8"))


# --------------------------------------------------------------------------- the pytest plugin


def _make_reporter(fd, nonce):
    """A pytest plugin that reports to ``fd``; the nonce lives only in this closure."""
    prefix = (nonce + " ").encode("ascii")

    def emit(event):
        try:
            _write_all(fd, prefix + json.dumps(event).encode("utf-8") + b"\n")
        except OSError:
            pass

    def text(report):
        try:
            return str(report.longreprtext)[:_MESSAGE_LIMIT]
        except Exception:  # a candidate's exception with a broken __repr__
            return "<unprintable failure>"

    class _Reporter:
        def pytest_collectreport(self, report):
            if report.failed:
                emit({"ev": "collect_error", "id": report.nodeid, "msg": text(report)})

        def pytest_collection_finish(self, session):
            emit({"ev": "collected", "ids": [item.nodeid for item in session.items]})

        def pytest_runtest_logreport(self, report):
            event = {"ev": "phase", "id": report.nodeid, "when": report.when, "outcome": report.outcome}
            if report.failed:
                event["msg"] = text(report)
            emit(event)

        def pytest_sessionfinish(self, session, exitstatus):
            emit({"ev": "end", "exit": int(exitstatus)})

    return _Reporter()


def expected_test_names(source):
    """Names of the test functions a test file defines (``test*`` and ``Test*.test*``)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name.startswith("test"):
                    names.add(node.name + "::" + item.name)
    return names


def _base_name(nodeid):
    """``test_solution.py::TestX::test_y[3]`` -> ``TestX::test_y``."""
    name = nodeid.split("::", 1)[1] if "::" in nodeid else nodeid
    return name.split("[", 1)[0]


class _CappedOutput:
    """The run's stdout/stderr, kept up to ``limit`` bytes; the rest is counted, not stored."""

    def __init__(self, limit):
        self.limit = limit
        self.data = bytearray()
        self.dropped = 0

    def feed(self, chunk):
        keep = max(0, self.limit - len(self.data))
        self.data += chunk[:keep]
        self.dropped += len(chunk) - min(len(chunk), keep)


class _Report:
    """Reads the plugin's lines and decides the verdict."""

    def __init__(self):
        self.prefix = None  # set by the first line: the nonce the child drew before any candidate code ran
        self.buffer = b""
        self.size = 0
        self.tampered = []
        self.collected = None
        self.collect_errors = []
        self.phases = {}  # nodeid -> {when: (outcome, msg)}
        self.end = None

    def feed(self, data):
        self.size += len(data)
        if self.size > _REPORT_LIMIT:
            self._tamper("report larger than %d bytes" % _REPORT_LIMIT)
            return
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            self._line(line)

    def finish(self):
        if self.buffer:
            self._tamper("report ends with a partial line")
            self.buffer = b""

    def _tamper(self, why):
        if len(self.tampered) < 5:
            self.tampered.append(why)

    def _line(self, line):
        if self.prefix is None:
            if len(line) == 32 and all(c in b"0123456789abcdef" for c in line):
                self.prefix = line + b" "
            else:
                self._tamper("the report does not start with a nonce")
                self.prefix = b"\0"
            return
        if not line.startswith(self.prefix):
            self._tamper("a report line without the run's nonce")
            return
        try:
            event = json.loads(line[len(self.prefix):].decode("utf-8"))
            kind = event["ev"]
            if kind == "collected":
                if self.collected is not None:
                    raise ValueError("collected twice")
                self.collected = [str(i) for i in event["ids"]]
            elif kind == "collect_error":
                self.collect_errors.append({"id": str(event["id"]), "msg": str(event["msg"])})
            elif kind == "phase":
                self.phases.setdefault(str(event["id"]), {})[str(event["when"])] = (
                    str(event["outcome"]),
                    str(event.get("msg", "")),
                )
            elif kind == "end":
                if self.end is not None:
                    raise ValueError("two end records")
                self.end = int(event["exit"])
            else:
                raise ValueError("unknown event %r" % (kind,))
        except Exception as exc:  # malformed line: not something our plugin writes
            self._tamper("malformed report line (%s)" % (exc,))

    def outcome_of(self, nodeid):
        phases = self.phases.get(nodeid, {})
        if any(outcome == "failed" for when, (outcome, _) in phases.items() if when != "call"):
            return "error"
        if phases.get("setup", ("",))[0] == "skipped":
            return "skipped"
        call = phases.get("call")
        if call is None:
            return "not_run"
        if call[0] == "passed" and phases.get("teardown", ("",))[0] == "passed":
            return "passed"
        if call[0] == "passed":
            return "not_run"  # the process died before teardown
        return call[0]  # failed / skipped

    def result(self, expected):
        collected = self.collected or []
        tests = []
        counts = {"passed": 0, "failed": 0, "error": 0, "skipped": 0, "not_run": 0}
        for nodeid in collected:
            outcome = self.outcome_of(nodeid)
            counts[outcome] = counts.get(outcome, 0) + 1
            msg = ""
            for when in ("setup", "call", "teardown"):
                phase = self.phases.get(nodeid, {}).get(when)
                if phase and phase[1]:
                    msg = phase[1]
                    break
            tests.append({"id": nodeid, "outcome": outcome, "msg": msg})
        unknown = set(self.phases) - set(collected)
        if unknown:
            self._tamper("results for tests that were never collected")
        missing = []
        if expected is not None and self.collected is not None:
            seen = {_base_name(i) for i in collected}
            missing = sorted(expected - seen)
        return {
            "collected": len(collected) if self.collected is not None else 0,
            "passed": counts["passed"],
            "failed": counts["failed"],
            "errors": counts["error"] + len(self.collect_errors),
            "skipped": counts["skipped"],
            "not_run": counts["not_run"],
            "complete": self.end is not None,
            "pytest_exit": self.end,
            "tests": tests,
            "collect_errors": self.collect_errors,
            "missing_tests": missing,
            "tampered": list(self.tampered),
        }


# --------------------------------------------------------------------------- the worker


class Worker:
    def __init__(self, config, proto_in, proto_out):
        self.config = config
        self.proto_in = proto_in
        self.proto_out = proto_out
        self.in_container = config.get("mode") == "container"
        self.base = config["base"]
        self.scratch = list(config.get("scratch", []))  # other dirs a run may write, wiped after it
        self.drop_to = config.get("drop_to")  # (uid, gid) for the process backend run as root
        self.runs = 0
        # SIGCHLD wakes the select loop through this pipe, so a finished run is noticed at once.
        self.wake = os.pipe()
        for fd in self.wake:
            os.set_blocking(fd, False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self.wake[1])
        self.nproc = None
        self.import_path = None
        if self.drop_to:
            # The interpreter's files may sit where nobody cannot reach (e.g. under /root). Open
            # the import path's directories now, as root; after the drop, imports go through
            # /proc/self/fd/N, which checks only the directory's own (world-readable) mode.
            self.import_path = []
            for entry in sys.path:
                try:
                    fd = os.open(entry, os.O_RDONLY | os.O_DIRECTORY)
                except OSError:
                    continue
                self.import_path.append("/proc/self/fd/%d" % fd)
        if not self.in_container:
            uid = self.drop_to[0] if self.drop_to else os.getuid()
            self.nproc = _count_processes(uid) + int(config.get("pids_limit", 128))

    # -- one run --------------------------------------------------------------------------

    def run(self, request):
        self.runs += 1
        started = time.monotonic()
        workdir = os.path.join(self.base, "run%d" % self.runs)
        inifile = os.path.join(workdir, ".pytest.ini")  # read before any candidate code runs
        files = request["files"]
        test_file = request.get("test_file", "test_solution.py")
        timeout = float(request["timeout"])
        output_limit = int(request.get("output_limit", 1 << 20))
        for name in files:
            if not name or "/" in name or name.startswith(".") or name in ("conftest.py",):
                return {"op": "result", "harness_error": "refusing file name %r" % (name,)}
        os.mkdir(workdir, 0o700)
        for name, text in files.items():
            with open(os.path.join(workdir, name), "w", encoding="utf-8") as handle:
                handle.write(text)
        with open(inifile, "w") as handle:
            handle.write("[pytest]\n")
        if self.drop_to:
            os.chmod(self.base, 0o711)
            for path in [workdir, inifile] + [os.path.join(workdir, n) for n in files]:
                os.chown(path, *self.drop_to)
        expected = expected_test_names(files.get(test_file, ""))

        report = _Report()
        rep_r, rep_w = os.pipe()
        out_r, out_w = os.pipe()
        args = [
            "-q", "--no-header", "--tb=short", "-p", "no:cacheprovider", "--noconftest",
            "-c", inifile, "--rootdir", workdir, "-o", "addopts=", "-o", "python_files=test_*.py",
            os.path.join(workdir, test_file),
        ]
        pid = os.fork()
        if pid == 0:  # the child never returns
            self._child(workdir, args, timeout, rep_w, out_w, [rep_r, out_r, self.proto_in, self.proto_out, *self.wake])
        os.close(rep_w)
        os.close(out_w)

        output = _CappedOutput(output_limit)
        sinks = {rep_r: report, out_r: output}
        status = None
        timed_out = False
        deadline = started + timeout
        open_fds = [rep_r, out_r]
        # Read until the child exits (not until EOF: a background process may hold the pipes).
        while status is None:
            wait = deadline - time.monotonic()
            if wait <= 0:
                timed_out = True
                break
            ready, _, _ = select.select(open_fds + [self.wake[0]], [], [], min(wait, 0.5))
            for fd in ready:
                if fd == self.wake[0]:  # SIGCHLD arrived
                    while _drain(fd):
                        pass
                    continue
                data = os.read(fd, _CHUNK)
                if not data:
                    open_fds.remove(fd)
                else:
                    sinks[fd].feed(data)
            done, code = os.waitpid(pid, os.WNOHANG)
            if done:
                status = code
        strays = self._kill_everything(pid)
        if status is None:
            for _ in range(200):
                done, code = os.waitpid(pid, os.WNOHANG)
                if done:
                    status = code
                    break
                time.sleep(0.005)
        # Everything that could write is dead now: drain what is left in the pipes.
        for fd in (rep_r, out_r):
            if fd in open_fds:
                os.set_blocking(fd, False)
                while True:
                    try:
                        data = os.read(fd, _CHUNK)
                    except BlockingIOError:
                        break
                    if not data:
                        break
                    sinks[fd].feed(data)
            os.close(fd)
        report.finish()
        clean = self._wipe(workdir)
        result = report.result(expected)
        exit_code = signal_name = None
        if status is not None:
            if os.WIFEXITED(status):
                exit_code = os.WEXITSTATUS(status)
            elif os.WIFSIGNALED(status):
                try:
                    signal_name = signal.Signals(os.WTERMSIG(status)).name
                except ValueError:
                    signal_name = str(os.WTERMSIG(status))
        result.update(
            op="result",
            timed_out=timed_out,
            exit_code=exit_code,
            signal=signal_name,
            strays=strays,
            clean=clean,
            output=output.data.decode("utf-8", "replace"),
            output_dropped=output.dropped,
            duration_s=round(time.monotonic() - started, 4),
        )
        return result

    def _child(self, workdir, args, timeout, rep_w, out_w, close_fds):
        try:
            os.setsid()
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for fd in close_fds:
                os.close(fd)
            os.dup2(out_w, 1)
            os.dup2(out_w, 2)
            os.close(out_w)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            try:  # the kernel's OOM killer should pick the candidate, never the worker
                with open("/proc/self/oom_score_adj", "w") as handle:
                    handle.write("1000")
            except OSError:
                pass
            import resource

            limits = self.config.get("rlimits", {})
            cpu = int(timeout) + 2
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            for name, value in limits.items():
                resource.setrlimit(getattr(resource, name), (int(value), int(value)))
            if self.nproc is not None:
                resource.setrlimit(resource.RLIMIT_NPROC, (self.nproc, self.nproc))
            if self.drop_to:
                os.setgroups([])
                os.setgid(self.drop_to[1])
                os.setuid(self.drop_to[0])
                sys.path[:] = self.import_path
                sys.path_importer_cache.clear()
            os.chdir(workdir)
            env = dict(self.config.get("env", {}))
            env["HOME"] = workdir
            if not self.in_container:
                env["TMPDIR"] = workdir
            os.environ.clear()
            os.environ.update(env)
            import tempfile

            tempfile.tempdir = None
            sys.dont_write_bytecode = True
            import pytest

            # The nonce is drawn here, after the fork, and sent first: the worker's memory (which
            # the child inherits) never holds it, and no candidate code has run yet.
            nonce = os.urandom(16).hex()
            _write_all(rep_w, nonce.encode("ascii") + b"\n")
            reporter = _make_reporter(rep_w, nonce)
            del nonce
            code = pytest.main(args, plugins=[reporter])
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except Exception:
                pass
            os._exit(int(code))
        except BaseException:
            try:
                os.write(2, traceback.format_exc().encode("utf-8", "replace"))
            finally:
                os._exit(70)

    # -- cleaning up after a run ------------------------------------------------------------

    def _kill_everything(self, pid):
        """SIGKILL every process the run started; return how many outlived the pytest child."""
        strays = set()
        for attempt in range(100):
            if self.in_container:
                # We are PID 1 of the container's PID namespace: kill(-1) reaches every other
                # process in it, however it detached itself (setsid, double fork).
                victims = [p for p in _live_pids() if p != 1]
                if victims:
                    try:
                        os.kill(-1, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            else:
                # Process backend: we are a child subreaper, so orphans of the run are
                # reparented to us and stay findable as our descendants.
                victims = _descendants(os.getpid())
                for victim in victims:
                    try:
                        os.kill(victim, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
            strays.update(v for v in victims if v != pid)
            self._reap(pid)
            if not victims:
                break
            time.sleep(0.002 * min(attempt + 1, 10))
        return len(strays)

    def _reap(self, keep):
        """Reap zombies except the pytest child (its status is read by :meth:`run`)."""
        for child in _children(os.getpid()):
            if child == keep:
                continue
            try:
                os.waitpid(child, os.WNOHANG)
            except ChildProcessError:
                pass

    def _wipe(self, workdir):
        ok = _remove(workdir)
        for scratch in self.scratch:
            try:
                entries = os.listdir(scratch)
            except OSError:
                continue
            for entry in entries:
                ok &= _remove(os.path.join(scratch, entry))
        return ok

    # -- the serve loop -----------------------------------------------------------------------

    def serve(self):
        _send(self.proto_out, {"op": "ready", "python": sys.version.split()[0], "pytest": _pytest_version()})
        while True:
            try:
                request = _recv(self.proto_in)
            except (OSError, ValueError):
                return
            if request is None or request.get("op") == "exit":
                return
            if request.get("op") == "ping":
                _send(self.proto_out, {"op": "pong"})
                continue
            try:
                result = self.run(request)
            except Exception:
                result = {"op": "result", "harness_error": traceback.format_exc()[-_MESSAGE_LIMIT:]}
            _send(self.proto_out, result)


def _pytest_version():
    import pytest

    return pytest.__version__


def _remove(path):
    def unlock(func, target, _exc):  # a run may chmod its files to 000
        try:
            os.chmod(os.path.dirname(target) or ".", 0o700)
            os.chmod(target, 0o700)
            func(target)
        except OSError:
            pass

    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, onerror=unlock)
        elif os.path.lexists(path):
            os.unlink(path)
    except OSError:
        pass
    return not os.path.lexists(path)


def _stat_fields(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    return data[data.rindex(b")") + 2:].split()  # after the command name, which may hold spaces


def _all_pids():
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _live_pids():
    """PIDs of processes that are not zombies."""
    live = []
    for pid in _all_pids():
        fields = _stat_fields(pid)
        if fields is not None and fields[0] != b"Z":
            live.append(pid)
    return live


def _drain(fd):
    try:
        return bool(os.read(fd, 4096))
    except BlockingIOError:
        return False


def _children(parent):
    found = []
    for pid in _all_pids():
        fields = _stat_fields(pid)
        if fields is not None and int(fields[1]) == parent:
            found.append(pid)
    return found


def _descendants(root):
    parents = {}
    for pid in _all_pids():
        fields = _stat_fields(pid)
        if fields is not None and fields[0] != b"Z":
            parents[pid] = int(fields[1])
    found = []
    for pid in parents:
        seen = 0
        parent = parents.get(pid)
        while parent is not None and seen < 64:
            if parent == root:
                found.append(pid)
                break
            parent = parents.get(parent)
            seen += 1
    return found


def _count_processes(uid):
    count = 0
    for pid in _all_pids():
        try:
            if os.stat("/proc/%d" % pid).st_uid == uid:
                count += 1
        except OSError:
            pass
    return count


def _preload():
    """Import what every run needs, once, before forking."""
    import importlib

    import _pytest.config
    import pytest  # noqa: F401

    for name in _pytest.config.default_plugins:
        try:
            importlib.import_module("_pytest." + name)
        except Exception:
            pass
    for name in (
        "collections", "itertools", "functools", "heapq", "bisect", "math", "re", "string",
        "typing", "io", "contextlib", "json", "random", "copy", "dataclasses", "operator",
        "statistics", "fractions", "decimal", "datetime", "unittest.mock", "tempfile",
    ):
        try:
            importlib.import_module(name)
        except Exception:
            pass


def main():
    config = json.loads(sys.argv[1])
    # Move the protocol channel off fds 0/1 so that nothing the candidate inherits reaches it.
    proto_in = os.dup(0)
    proto_out = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if config.get("mode") != "container":
        try:  # PR_SET_CHILD_SUBREAPER: orphans of a run are reparented to us
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)
        except Exception:
            pass
    os.environ.clear()
    os.environ.update(config.get("env", {}))
    sys.dont_write_bytecode = True
    try:
        _preload()
        worker = Worker(config, proto_in, proto_out)
    except Exception:
        _send(proto_out, {"op": "fatal", "error": traceback.format_exc()[-_MESSAGE_LIMIT:]})
        return 1
    worker.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
