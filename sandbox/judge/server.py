"""The judge server (trusted): the long-lived process of the judge's user that runs the tests of
trusted runs.

Forked from the supervisor once its pytest session is warm (so it inherits pytest, configured, and
every warm cache), it drops to the judge's user and serves the supervisor's requests over a
socket pair: each brings the test file's text and, as descriptors, the run's report pipe, output
pipe and socket to that run's candidate process. A plain test file whose imports keep no state a
test could change (:func:`gcop_env.sandbox.judge.plan.inline_ok`) runs *inline*: the plain runner
in this process, then everything it changed put back (modules, paths, environment, streams, the
random generator's state); any other test file runs in a child forked for it, which exits after
(pytest's runner returns into the session's collection there). Either way the candidate's code
never runs here, and this process answers ``done`` when the run's report is complete. A run that
times out or breaks the protocol gets this server killed and a fresh one forked; the supervisor
also replaces it after a number of runs, so that nothing accumulates.
"""

import base64
import gc
import linecache
import marshal
import os
import random
import socket
import struct
import sys
import time

from gcop_env.sandbox.judge.plain_runner import plain_session
from gcop_env.sandbox.judge.plan import cached_plan
from gcop_env.sandbox.judge.remote import Channel, SolutionFinder
from gcop_env.sandbox.judge.reporter import make_emitter, make_reporter
from gcop_env.sandbox.supervisor.session import RunInThisChild
from gcop_env.sandbox.wire.framing import read_exact, send_json, write_all

_STATE = ("last_type", "last_value", "last_traceback")


def send_request(sock, message, fds):
    """One run for the judge server: a length-prefixed JSON message with descriptors attached."""
    import json

    body = json.dumps(message).encode("utf-8")
    socket.send_fds(sock, [struct.pack(">I", len(body)) + body], fds)


class JudgeServer:
    """See the module docstring. ``server``: the supervisor's ForkServer (this process's copy of it:
    its session, calibration and limits); ``control``: this end of the socket pair."""

    def __init__(self, server, control, workdir):
        self.server = server
        self.control = control
        self.workdir = workdir
        self.plans = {}
        self.codes = {}  # plan serial -> the test file's code (the supervisor's compilation)
        self.devnull = os.open(os.devnull, os.O_RDWR)

    def plan(self, source, path, modules):
        return cached_plan(self.plans, source, path, modules)

    def serve(self):
        """Serve until the supervisor hangs up (then exit); never returns in a forked run's child."""
        import json

        os.dup2(self.devnull, 1)  # (fd 1 and 2 were the start-up's error pipe: from here, each run's output)
        os.dup2(self.devnull, 2)
        fd = self.control.fileno()
        while True:
            try:
                data, fds, _flags, _addr = socket.recv_fds(self.control, 4, 4)
            except OSError:
                os._exit(0)
            if len(data) < 4:
                os._exit(0)
            body = read_exact(fd, struct.unpack(">I", data)[0])
            if body is None:
                os._exit(0)
            request = json.loads(body.decode("utf-8"))
            self.handle(request, fds)

    def handle(self, request, fds):
        import resource

        rep_w, out_w, channel = fds
        for serial in request.get("forget", ()):
            self.codes.pop(serial, None)
        if request.get("code") is not None:  # (the supervisor's own compilation of the file, marshalled)
            self.codes[request["code_id"]] = marshal.loads(base64.b64decode(request["code"]))
        status = 0
        if request["inline"]:
            before = resource.getrusage(resource.RUSAGE_SELF)
            self.execute(request, rep_w, out_w, channel)
            after = resource.getrusage(resource.RUSAGE_SELF)
            usage = [after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime, float(after.ru_minflt - before.ru_minflt)]
        else:
            pid = os.fork()
            if pid == 0:
                self.execute(request, rep_w, out_w, channel)  # (returns into the session, or exits)
            for passed in fds:
                os.close(passed)
            _, status, child = os.wait4(pid, 0)
            usage = [child.ru_utime, child.ru_stime, float(child.ru_minflt)]
            for name in os.listdir(self.workdir):  # what the run wrote (its test file...): not the next run's
                _remove(os.path.join(self.workdir, name))
        send_json(self.control.fileno(), {"op": "done", "status": status, "usage": usage if request.get("profile") else None})

    def execute(self, request, rep_w, out_w, channel_fd):
        """One run: the plain runner here (inline) or, in a forked child, the plain runner or pytest."""
        inline = request["inline"]
        test_file = request["test_file"]
        test_path = os.path.join(self.workdir, test_file)
        if request.get("code_id") is not None:  # (shipped with this run or an earlier one)
            plan = _Shipped(self.codes[request["code_id"]], request["tests"], request["plan_seconds"])
            if plan.code.co_filename != test_path:
                raise ValueError("the code was compiled for another file: %r" % plan.code.co_filename)
            bound = frozenset(request["bound"])
        else:
            plan = self.plan(request["text"], test_path, tuple(request["modules"]))
            bound = plan.bound_names
        saved = _Saved(self.workdir) if inline else None
        channel = None
        profile = {"fork": 0.0, "t_forked": time.monotonic()} if request.get("profile") else None
        try:
            os.dup2(out_w, 1)
            os.dup2(out_w, 2)
            os.close(out_w)
            if not inline:
                with open(test_path, "w", encoding="utf-8") as handle:
                    handle.write(request["text"])
                for name, text in request["data"].items():
                    with open(os.path.join(self.workdir, name), "w", encoding="utf-8") as handle:
                        handle.write(text)
            else:  # (no file: the traceback's lines come from here)
                lines = request["text"].splitlines(True)
                linecache.cache[test_path] = (len(request["text"]), None, lines, test_path)
            nonce = os.urandom(16).hex()
            write_all(rep_w, nonce.encode("ascii") + b"\n")
            emit = make_emitter(rep_w, nonce)
            del nonce

            def harness_failed(why):
                emit({"ev": "harness", "why": str(why)[:500]})
                if not inline:
                    os._exit(70)

            channel = Channel(channel_fd, request["modules"], test_file[:-3], harness_failed, bound)
            finder = SolutionFinder(channel)
            sys.meta_path.insert(0, finder)
            os.environ["PYTEST_CURRENT_TEST"] = ""  # (set per test by the runners)
            del os.environ["PYTEST_CURRENT_TEST"]
            server = self.server
            session = server.session
            capture = session.config.pluginmanager.getplugin("capturemanager") if session is not None else None
            if profile is not None:
                channel.profile = profile
                profile["setup"] = time.monotonic() - profile.pop("t_forked")
                profile["t_main"] = time.monotonic()
            pads = tuple(request["pads"]) if request.get("pads") else None
            if request["runner"] == "plain" and pads is not None:
                code = plain_session(session, server.pyfunc_call, plan, None, self.workdir, test_file, emit, None, capture,
                                     profile, pads, None, guard=channel, before_end=_candidate_usage(channel, emit, profile))
                if not inline:
                    os._exit(code)
            else:  # pytest collects this dir's file, as the root (the session's own is the in-process runs')
                import pathlib

                session.config.args = [test_path]
                session.config._rootpath = pathlib.Path(self.workdir)  # (test ids relative to it: test_solution.py::...)
                reporter = make_reporter(emit, None, guard=channel, test_file=test_file)
                if profile is not None:
                    reporter.profile = profile
                raise RunInThisChild(reporter, None, capture)
        except RunInThisChild:
            raise
        except BaseException:
            import traceback

            try:  # (for whoever reads the run's output: the judge's own failure, never the candidate's doing)
                os.write(2, ("judge failure: " + traceback.format_exc()).encode("utf-8", "replace"))
            finally:
                if not inline:
                    os._exit(70)
            raise
        finally:
            if inline:
                capture = self.server.session.config.pluginmanager.getplugin("capturemanager") if (
                    self.server.session is not None) else None
                if capture is not None and getattr(capture, "_global_capturing", None) is not None:
                    try:  # (a run that ended at its import left pytest's capture on)
                        capture.stop_global_capturing()
                    except Exception:
                        pass
                try:
                    os.close(rep_w)
                except OSError:
                    pass
                if channel is None:
                    try:
                        os.close(channel_fd)
                    except OSError:
                        pass
                else:  # (by the channel: it may have closed it already, and the number be another's since)
                    channel.close()
                saved.restore()
                linecache.cache.pop(test_path, None)
                os.dup2(self.devnull, 1)
                os.dup2(self.devnull, 2)


def _remove(path):
    import shutil

    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except OSError:
            pass


def _candidate_usage(channel, emit, profile):
    """When profiling: a callable that asks the candidate process for its CPU and page faults so far
    and reports them (informational; nothing of it reaches a verdict)."""
    if profile is None:
        return None

    def ask():
        try:
            if channel.ready and channel.dead is None:
                usage = channel.request(b"U", ())
                if type(usage) is list and len(usage) == 2 and all(type(v) is float for v in usage):
                    emit({"ev": "profile", "candidate_cpu": usage[0], "candidate_faults": usage[1]})
        except BaseException:
            pass

    return ask


class _Shipped:
    """What the plain runner reads of a plan, as the supervisor sent it (trusted: from the supervisor)."""

    __slots__ = ("code", "tests", "seconds")

    def __init__(self, code, tests, seconds):
        self.code, self.tests, self.seconds = code, tests, seconds


class _Saved:
    """What an inline run may change in this process, saved before it and put back after."""

    random_state = None  # the generator's state before the first inline run (every run starts from it)

    def __init__(self, workdir):
        self.workdir = workdir
        self.path, self.meta_path, self.path_hooks = list(sys.path), list(sys.meta_path), list(sys.path_hooks)
        self.modules = set(sys.modules)
        self.environ = dict(os.environ._data)
        self.streams = sys.stdin, sys.stdout, sys.stderr
        if _Saved.random_state is None:
            _Saved.random_state = random.getstate()
        self.random = _Saved.random_state
        self.last = {name: getattr(sys, name) for name in _STATE if hasattr(sys, name)}
        self.limit = sys.getrecursionlimit()

    def restore(self):
        sys.path[:] = self.path
        sys.meta_path[:] = self.meta_path
        sys.path_hooks[:] = self.path_hooks
        for name in set(sys.modules) - self.modules:
            del sys.modules[name]  # (the tests, the solution's stand-ins, what the tests imported)
        if os.environ._data != self.environ:  # (os.environ's own methods keep the process's environment in step)
            for key in [key for key in os.environ._data if key not in self.environ]:
                del os.environ[os.environ.decodekey(key)]
            for key, value in self.environ.items():
                if os.environ._data.get(key) != value:
                    os.environ[os.environ.decodekey(key)] = os.environ.decodevalue(value)
        sys.stdin, sys.stdout, sys.stderr = self.streams
        random.setstate(self.random)
        for name in _STATE:
            if name in self.last:
                setattr(sys, name, self.last[name])
            elif hasattr(sys, name):
                delattr(sys, name)
        sys.setrecursionlimit(self.limit)
        try:
            os.chdir(self.workdir)
        except OSError:
            pass
        gc.collect(0)
