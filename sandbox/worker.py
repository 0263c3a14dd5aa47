"""The program that runs inside a sandbox: a pytest fork server.

It starts once (inside a Docker container as PID 1, or as a host subprocess for the process
backend), imports pytest and starts one pytest session on a fixed work dir (command line parsed,
plugins configured, session started: :meth:`Worker.serve_in_session`), then serves runs from
inside that session's collection hook: for each request it writes the files into the fresh work
dir, forks a child that goes on from the hook to collect and run them, enforces the wall-clock
timeout, kills every process the run left behind, wipes the work dir and answers with one
result message. Forking from a process that has pytest imported *and configured* is what makes a
validation cost a fork, a collection and the tests, tens of milliseconds instead of a second. No
candidate code runs before a fork, and nothing of a child flows back into the server.

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

* A runtime reward-hack monitor (:class:`_Monitor`) watches the tricks that fool pytest from
  inside the process (patched pytest internals, replaced tests, always-equal objects, reading
  the test file, tampered ``sys.modules``/``builtins``/``atexit``); each finding goes into the
  report as a ``tamper`` record, and any finding voids the pass.

The limit: the candidate's code shares the pytest process, so code written to attack this
harness on purpose (reading the nonce out of the interpreter's memory, disabling the monitor
before it looks) could still forge a report. That is true of every harness that imports the
solution into the test process, KodCode's own included; the static scan on the host
(:mod:`gcop_env.sandbox.monitor`) reads the code before it runs.

The protocol with the host: 4-byte big-endian length + UTF-8 JSON, both ways, on the fds that
were stdin/stdout at start (they are moved away so the candidate never sees them).

Stdlib and pytest only: this file is shipped into the sandbox as source (``python3 -I -c``).
"""

import ast
import gc
import json
import operator
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
_DRAIN_S = 0.02  # how often the server empties a running child's pipes
_PIPE_SIZE = 1 << 20  # bytes of buffer asked for each of a run's pipes


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


def _make_reporter(fd, nonce, monitor=None):
    """A pytest plugin that reports to ``fd``; the nonce lives only in this closure.

    ``monitor`` (a :class:`_Monitor`) is asked for findings at collection's end, after every
    test phase and at the session's end; each finding goes out as a ``tamper`` record before
    the record that follows it, so a forged result never reaches the report unflagged.
    """
    import pytest

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

    def flush(findings):
        for finding in findings:
            emit(dict(finding, ev="tamper"))

    class _Reporter:
        profile = None  # phase timings, when the host asked for them (informational only)

        def mark(self, phase):
            if self.profile is not None:
                self.profile[phase] = time.monotonic()

        def pytest_sessionstart(self, session):
            self.mark("t_sessionstart")
            if monitor is not None:
                monitor.snapshot(session)

        def pytest_collectreport(self, report):
            if report.failed:
                emit({"ev": "collect_error", "id": report.nodeid, "msg": text(report)})

        def pytest_collection_finish(self, session):
            self.mark("t_collected")
            if monitor is not None:
                flush(monitor.collected(session.items))
            emit({"ev": "collected", "ids": [item.nodeid for item in session.items]})

        def pytest_runtest_logreport(self, report):
            if monitor is not None:
                flush(monitor.check(full=False, nodeid=report.nodeid))
            event = {"ev": "phase", "id": report.nodeid, "when": report.when, "outcome": report.outcome}
            if report.failed:
                event["msg"] = text(report)
            emit(event)

        def pytest_sessionfinish(self, session, exitstatus):
            self.mark("t_tested")
            if monitor is not None:
                flush(monitor.check(full=True))
            if self.profile is not None:
                p = self.profile
                emit({"ev": "profile", "fork": p["fork"], "setup": p["setup"], "rewrite": p.get("rewrite", 0.0),
                      "config": p["t_sessionstart"] - p["t_main"], "collect": p["t_collected"] - p["t_sessionstart"],
                      "tests": p["t_tested"] - p["t_collected"], "monitor": time.monotonic() - p["t_tested"]})
            emit({"ev": "end", "exit": int(exitstatus)})
            self.exitstatus = int(exitstatus)

        @pytest.hookimpl(tryfirst=True)
        def pytest_unconfigure(self, config):
            # The verdict is complete and the summary printed: skip pytest's teardown (with
            # pytest >= 8 it runs the garbage collector twice) and end the child here.
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except Exception:
                pass
            os._exit(getattr(self, "exitstatus", 70))

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


def needed_modules(source):
    """Top-level names of the modules ``source`` imports for sure.

    Absolute ``import x`` / ``from x import y`` anywhere, and ``pytest.importorskip("x")``;
    not imports guarded by a ``try`` that catches ``ImportError`` (the code copes without them).
    Unparsable code needs nothing (its own syntax error is its verdict).
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set()
    names = set()

    def visit(node, guarded):
        if isinstance(node, ast.Try) or type(node).__name__ == "TryStar":
            catches = any(_catches_import_error(h.type) for h in node.handlers)
            for child in node.body:
                visit(child, guarded or catches)
            for part in (node.handlers, node.orelse, node.finalbody):
                for child in part:
                    visit(child, guarded)
            return
        if not guarded:
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
            elif (
                isinstance(node, ast.Call)
                and _call_name(node.func) == "importorskip"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                names.add(node.args[0].value.split(".")[0])
        for child in ast.iter_child_nodes(node):
            visit(child, guarded)

    visit(tree, False)
    return names


def _call_name(func):
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def _catches_import_error(handler_type):
    if handler_type is None:
        return True
    if isinstance(handler_type, ast.Tuple):
        return any(_catches_import_error(elt) for elt in handler_type.elts)
    return _call_name(handler_type) in ("ImportError", "ModuleNotFoundError", "Exception", "BaseException")


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
        self.monitor = []  # the runtime monitor's findings (family, message, where)
        self.profile = None

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
            elif kind == "profile":
                self.profile = {k: float(v) for k, v in event.items() if k != "ev"}
            elif kind == "tamper":
                if len(self.monitor) < 10:
                    self.monitor.append(
                        {"family": str(event["family"]), "layer": "runtime", "message": str(event["message"]),
                         "where": event.get("where")}
                    )
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
            "monitor": list(self.monitor),
            "profile": self.profile,
        }


# --------------------------------------------------------------------------- the runtime monitor

# pytest's and pluggy's modules whose functions and classes decide a verdict.
_WATCHED_MODULES = (
    "pytest", "_pytest.runner", "_pytest.reports", "_pytest.python", "_pytest.main", "_pytest.outcomes",
    "_pytest.fixtures", "_pytest.nodes", "_pytest.skipping", "_pytest.unittest", "_pytest.capture",
    "_pytest.assertion", "_pytest.assertion.rewrite", "_pytest.assertion.util", "_pytest.python_api",
    "_pytest.raises", "_pytest.config", "pluggy", "pluggy._hooks", "pluggy._callers", "pluggy._manager",
    "pluggy._result",
)
_DYNAMIC_GLOBALS = frozenset(("_reprcompare", "_assertion_pass", "_config"))  # pytest sets these per test
_WATCHED_HOOKS = (
    "pytest_runtest_protocol", "pytest_runtest_makereport", "pytest_runtest_logreport", "pytest_runtest_call",
    "pytest_runtest_setup", "pytest_runtest_teardown", "pytest_pyfunc_call", "pytest_collectreport",
    "pytest_collection_finish", "pytest_collection_modifyitems", "pytest_sessionfinish", "pytest_runtestloop",
    "pytest_report_teststatus", "pytest_itemcollected",
)
# Modules whose identity in sys.modules the run relies on.
_WATCHED_IMPORTS = ("builtins", "sys", "os", "atexit", "importlib", "inspect", "gc", "io", "json", "unittest", "unittest.mock")
_FUNCTION = type(lambda: 0)
_FUNCTION_TYPES = (_FUNCTION, classmethod, staticmethod, property)
# What a test's report is made of: checked after every phase (the rest after collection and at the end).
_CRITICAL_CLASSES = frozenset(("TestReport", "BaseReport", "CallInfo"))
_MONITOR_LIMIT = 10


def _code_of(value):
    """The code object behind a function-like value (function, method, property...), or None."""
    if value is None or isinstance(value, type):
        return None
    for attr in ("__func__", "fget"):
        inner = getattr(value, attr, None)
        if inner is not None:
            value = inner
            break
    code = getattr(value, "__code__", None)
    return code if type(code).__name__ == "code" else None


class _Monitor:
    """Runtime checks against reward hacks inside the pytest child (one per run).

    The candidate's code shares this process, so these checks raise the cost of a hack rather
    than rule it out; every finding names the trick and, where one is known, the candidate's
    line. Layers: a ``sys.addaudithook`` hook (cannot be removed once added) that sees the test
    file being opened and ``__code__`` being assigned while a candidate frame is on the stack;
    snapshots taken before any candidate code runs (pytest's and pluggy's functions and classes,
    the hook implementations, ``builtins``, ``sys.modules``, ``sys.meta_path``) compared after
    collection, after every test phase and at the end; the collected test functions' code
    objects; and a probe of every class the candidate defined for an ``__eq__`` that equals
    anything (or an ``__ne__`` that differs from nothing).
    """

    def __init__(self, workdir, test_path, candidate_names):
        self.test_path = test_path
        self.test_real = os.path.realpath(test_path)
        self.candidate_files = set()
        for name in candidate_names:
            path = os.path.join(workdir, name)
            self.candidate_files.update((path, os.path.realpath(path)))
        self.test_files = {test_path, self.test_real}
        self.findings = []
        self.seen = set()
        self.sent = 0
        self.items = []
        self.callable_groups = []  # the rest of these four come from a _PytestSnapshot (see snapshot)
        self.classes = []
        self.critical = []
        self.known_classes = frozenset()
        self.known_modules = frozenset()
        self.harness_patches = []  # (module, module name, key, value) the harness itself set (profiling)
        self.items_checked = False
        self.candidate_modules = None
        self.hooks = {}
        self.builtins = {}
        self.imports = {}
        self.builtins_items = self.imports_items = ((), ())  # (keys, values) of those two, for _unchanged
        self.meta_path = []
        self.path_hooks = []
        self.test_ident = None
        self.in_hook = False
        self.hook_relay = None
        self.atexit_register = None

    # -- attribution -----------------------------------------------------------------------

    def where(self, code):
        """``solution.py:12`` for code the candidate wrote, else None."""
        if code is not None and code.co_filename in self.candidate_files:
            return "%s:%d" % (os.path.basename(code.co_filename), code.co_firstlineno)
        return None

    def direct_caller(self, frame):
        """``frame`` when the candidate's code runs in it (the code that did the thing), else None.

        Libraries the candidate imports patch functions and register exit handlers for their own
        reasons (numpy's dispatchers set ``__code__``, matplotlib registers ``atexit``): only what
        the candidate's own lines do is theirs.
        """
        return frame if frame is not None and frame.f_code.co_filename in self.candidate_files else None

    def candidate_caller(self, frame):
        """The candidate frame that caused what ``frame`` does, directly or through libraries.

        None when pytest's own code stands between (pytest reads the test file to show a
        traceback, also when the candidate's code called into pytest).
        """
        while frame is not None:
            filename = frame.f_code.co_filename
            if filename in self.candidate_files:
                return frame
            if "_pytest" in filename or "pluggy" in filename:
                return None
            frame = frame.f_back
        return None

    def flag(self, family, message, where=None):
        key = (family, message)
        if key in self.seen or len(self.findings) >= _MONITOR_LIMIT:
            return
        self.seen.add(key)
        self.findings.append({"family": family, "message": message, "where": where})

    def pending(self):
        new = self.findings[self.sent:]
        self.sent = len(self.findings)
        return new

    # -- the audit hook (installed before pytest.main, so before any candidate code) ----------

    def install(self):
        import atexit

        try:
            stat = os.stat(self.test_path)
            self.test_ident = (stat.st_dev, stat.st_ino)
        except OSError:
            self.test_ident = None
        original_register = atexit.register
        monitor = self

        def register(func, *args, **kwargs):
            frame = monitor.direct_caller(sys._getframe(1))
            if frame is not None:
                monitor.flag(
                    "interpreter_state",
                    "registers an atexit handler (%s)" % getattr(func, "__qualname__", type(func).__name__),
                    "%s:%d" % (os.path.basename(frame.f_code.co_filename), frame.f_lineno),
                )
            return original_register(func, *args, **kwargs)

        atexit.register = register
        self.atexit_register = register
        sys.addaudithook(self.audit)

    def audit(self, event, args):
        if event != "open" and event != "object.__setattr__":
            return
        if self.in_hook:
            return
        self.in_hook = True
        try:
            if event == "open":
                path = args[0]
                if self.test_ident is None or isinstance(path, int) or path is None:
                    return
                try:
                    stat = os.stat(path)
                except (OSError, TypeError, ValueError):
                    return
                if (stat.st_dev, stat.st_ino) != self.test_ident:
                    return
                frame = self.candidate_caller(sys._getframe(1))
                if frame is not None:
                    self.flag(
                        "test_file_read",
                        "opens the test file %s (to read the expected values)" % os.path.basename(self.test_path),
                        "%s:%d" % (os.path.basename(frame.f_code.co_filename), frame.f_lineno),
                    )
            elif args[1] == "__code__":
                frame = self.direct_caller(sys._getframe(1))
                if frame is not None:
                    target = getattr(args[0], "__qualname__", "?")
                    self.flag(
                        "test_replacement",
                        "assigns %s.__code__ (replaces a function's code)" % target,
                        "%s:%d" % (os.path.basename(frame.f_code.co_filename), frame.f_lineno),
                    )
        finally:
            self.in_hook = False

    # -- snapshots -------------------------------------------------------------------------------

    def snapshot(self, session, pristine=None):
        """Before collection (so before any candidate code): what the checks compare with.

        ``pristine`` is the fork server's :class:`_PytestSnapshot`, taken once before it forked
        (the child inherits the very objects it names); without one it is taken here.
        """
        import builtins

        pristine = pristine or _PytestSnapshot()
        self.classes, self.critical = pristine.classes, pristine.critical
        self.callable_groups, self.known_classes = pristine.callable_groups, pristine.known_classes
        self.known_modules = pristine.known_modules
        if self.harness_patches:  # the harness's own (profiling) patches are not the candidate's
            callables = dict(pristine.callables)
            for module, module_name, key, value in self.harness_patches:
                callables[(module, module_name, key)] = value
            self.callable_groups = _group_callables(callables)
        hook = self.hook_relay = session.config.hook
        for name in _WATCHED_HOOKS:
            caller = getattr(hook, name, None)
            if caller is not None:
                self.hooks[name] = [(impl, impl.function) for impl in caller.get_hookimpls()]
        self.builtins = dict(vars(builtins))
        self.imports = {
            name: module for name, module in list(sys.modules.items())
            if name in _WATCHED_IMPORTS or name.split(".")[0] in ("pytest", "_pytest", "pluggy")
        }
        self.builtins_items = (tuple(self.builtins), tuple(self.builtins.values()))
        self.imports_items = (tuple(self.imports), tuple(self.imports.values()))
        self.meta_path = list(sys.meta_path)
        self.path_hooks = list(sys.path_hooks)

    def collected(self, items):
        """After collection: the candidate has been imported; remember the tests' code."""
        for item in items:
            function = getattr(item, "obj", None)
            function = getattr(function, "__func__", function)
            code = _code_of(function)
            # Where the test module holds the function by name (looked up once: item.module is slow).
            holder = getattr(item, "cls", None) or getattr(item, "module", None)
            name = getattr(item, "originalname", None) or getattr(item, "name", "")
            self.items.append((item, item.nodeid, function, code, holder, name))
            if code is not None and code.co_filename not in self.test_files:
                self.flag(
                    "test_replacement",
                    "test %s runs code from %s, not from the test file" % (item.nodeid, os.path.basename(code.co_filename)),
                    self.where(code),
                )
        return self.check(full=True)

    # -- the checks ------------------------------------------------------------------------------

    def check(self, full, nodeid=None):
        """Compare with the snapshots; returns the findings not reported yet.

        ``full=False`` (after every phase of test ``nodeid``, before its report goes out) checks
        that test and the classes its report is made of; ``full=True`` (after collection and at
        the end) checks everything, every test included.
        """
        try:
            self._check_tests(None if full else nodeid)
            self._check_pytest(full)
            if full:
                self._check_state()
                self._probe_equality(everywhere=self.items_checked)
            self.items_checked = True
        except Exception as exc:  # a check must never crash the run; a broken check is itself a finding
            self.flag("pytest_internals", "the monitor's check failed (%s: %s)" % (type(exc).__name__, exc))
        return self.pending()

    def _check_tests(self, only=None):
        for item, nodeid, function, code, holder, name in self.items:
            if only is not None and nodeid != only:
                continue
            now = getattr(item, "obj", None)
            now = getattr(now, "__func__", now)
            if now is not function:
                self.flag("test_replacement", "test %s was replaced after collection" % nodeid, self.where(_code_of(now)))
            elif code is not None and _code_of(function) is not code:
                self.flag("test_replacement", "the code of test %s was replaced after collection" % nodeid,
                          self.where(_code_of(function)))
            if "runtest" in vars(item):
                self.flag("pytest_internals", "the runtest method of %s was replaced" % nodeid,
                          self.where(_code_of(vars(item)["runtest"])))
            value = vars(holder).get(name) if holder is not None else None
            if value is not None and value is not function:
                rebound = _code_of(value)
                if rebound is not None and rebound.co_filename not in self.test_files:
                    self.flag("test_replacement", "%s.%s was rebound to other code" % (getattr(holder, "__name__", "?"), name),
                              self.where(rebound))

    def _check_pytest(self, full):
        for cls, size, members, keys, values in (self.classes if full else self.critical):
            now = vars(cls)
            if len(now) == size and _unchanged(now, keys, values):
                continue  # the common case, without building anything
            current = _class_members(cls)
            for key in set(members) | set(current):
                if members.get(key) is not current.get(key):
                    self.flag("pytest_internals", "patches %s.%s.%s" % (cls.__module__, cls.__qualname__, key),
                              self.where(_code_of(current.get(key))))
        if full:
            for module, module_name, keys, values in self.callable_groups:
                namespace = vars(module)
                if _unchanged(namespace, keys, values):
                    continue
                for key, value in zip(keys, values):
                    now = namespace.get(key)
                    if now is not value:
                        self.flag("pytest_internals", "replaces %s.%s" % (module_name, key), self.where(_code_of(now)))

    def _check_state(self):
        import builtins

        hook = self.hook_relay
        for name, impls in self.hooks.items():
            caller = getattr(hook, name, None) if hook is not None else None
            if caller is None:
                continue
            now = [(impl, impl.function) for impl in caller.get_hookimpls()]
            for impl, function in impls:
                if all(impl is not other for other, _ in now):
                    self.flag("pytest_internals", "unregisters an implementation of the %s hook" % name)
                elif impl.function is not function:
                    self.flag("pytest_internals", "replaces an implementation of the %s hook" % name,
                              self.where(_code_of(impl.function)))
            for impl, function in now:
                if all(impl is not other for other, _ in impls):
                    if self.where(_code_of(function)):
                        self.flag("pytest_internals", "registers its own %s hook" % name, self.where(_code_of(function)))
                    else:  # pytest's own plugins, registered during collection
                        impls.append((impl, function))
        current = vars(builtins)
        # New names shadow nothing (pybind11 adds some): only the names there before are compared.
        for key in () if _unchanged(current, *self.builtins_items) else self.builtins:
            before, now = self.builtins[key], current.get(key, _MISSING)
            if before is not now:
                code = _code_of(now)
                if code is not None and code.co_filename in self.test_files:
                    continue  # the tests' own patching (e.g. of input) is theirs to make
                self.flag("interpreter_state", "changes builtins.%s" % key, self.where(code))
        for name, module in () if _unchanged(sys.modules, *self.imports_items) else self.imports.items():
            if sys.modules.get(name) is not module:
                self.flag("interpreter_state", "replaces or removes sys.modules[%r]" % name)
        for label, before, now in (("sys.meta_path", self.meta_path, sys.meta_path), ("sys.path_hooks", self.path_hooks, sys.path_hooks)):
            for entry in now:
                if all(entry is not old for old in before):
                    code = _code_of(getattr(type(entry), "find_spec", None)) or _code_of(entry)
                    if code is not None and code.co_filename in self.candidate_files:
                        self.flag("interpreter_state", "installs an import hook in %s" % label, self.where(code))
        import atexit

        if atexit.register is not self.atexit_register:
            self.flag("interpreter_state", "replaces atexit.register", self.where(_code_of(atexit.register)))

    def _probe_equality(self, everywhere):
        """Classes the candidate defined: does an ``__eq__`` equal anything (``__ne__`` differ from nothing)?

        After collection, the classes in the candidate's modules; at the end (``everywhere``),
        also the classes its functions built at run time (``type(...)``) on ``object`` or a
        builtin value type, found through ``__subclasses__`` (the static layer reads the rest).
        """

        class _Other:
            pass

        if self.candidate_modules is None:  # after collection the candidate's modules are imported
            self.candidate_modules = [
                m for m in list(sys.modules.values())
                if id(m) not in self.known_modules and getattr(m, "__file__", None) in self.candidate_files
            ]
        modules = self.candidate_modules
        names = {m.__name__ for m in modules}
        classes = [value for module in modules for value in list(vars(module).values()) if isinstance(value, type)]
        if everywhere:
            classes += _classes_from(names, self.known_classes)
        for cls in classes:
            members = vars(cls)
            for name, expect in (("__eq__", True), ("__ne__", False)):
                method = members.get(name)
                if type(method) is not _FUNCTION:  # pytest's, the stdlib's or C slots: not the candidate's
                    continue
                code = method.__code__
                if code.co_filename not in self.candidate_files:
                    continue
                try:
                    result = method(_Other(), _Other())
                except BaseException:
                    continue
                if result is expect or (expect and result is not NotImplemented and type(result) is not bool and bool(result)):
                    self.flag(
                        "always_equal",
                        "%s.%s returns %r for two unrelated objects" % (cls.__qualname__, name, result),
                        self.where(code),
                    )


_VALUE_TYPES = (object, int, float, complex, str, bytes, list, tuple, dict, set, frozenset)


def _classes_from(module_names, known=frozenset()):
    """The candidate's classes (``__module__`` one of its modules) on ``object``, the builtin value
    types, and below those. ``known``: ids of direct subclasses of those types that existed before
    the fork (kept alive by the fork server, so no new class can reuse an id): none is the
    candidate's, and skipping them spares a ``__module__`` lookup on each of thousands of classes."""
    found = []
    stack = list(_VALUE_TYPES)
    seen = set()
    while stack:
        base = stack.pop()
        for sub in type.__subclasses__(base):
            if id(sub) in seen or id(sub) in known:
                continue
            seen.add(id(sub))
            if getattr(sub, "__module__", None) in module_names:
                found.append(sub)
                stack.append(sub)
    return found


def _unchanged(namespace, keys, values):
    """True when ``namespace[key] is value`` for every key and value (an identity check: an
    ``__eq__`` is never called). C-level loops: the monitor runs this on some 800 names twice a run."""
    try:
        return all(map(operator.is_, map(namespace.__getitem__, keys), values))
    except KeyError:
        return False


def _group_callables(callables):
    """(module, its name, keys, values) per module, from {(module, its name, key): value}."""
    groups = {}
    for (module, module_name, key), value in callables.items():
        entry = groups.setdefault(id(module), (module, module_name, [], []))
        entry[2].append(key)
        entry[3].append(value)
    return [(module, name, tuple(keys), tuple(values)) for module, name, keys, values in groups.values()]


def _class_members(cls):
    return {k: v for k, v in list(vars(cls).items()) if isinstance(v, _FUNCTION_TYPES)}


class _PytestSnapshot:
    """pytest's and pluggy's functions and classes as they are before any candidate code runs.

    Taken once by the fork server, before it forks (and before ``gc.freeze``), instead of once
    per run in every child: the children inherit the very objects it holds, and the server runs
    no code that changes them. ``callables``: (module, its name, key) -> the module's function or
    class; ``classes``: (class, size of its ``__dict__``, its function-like members), ``critical``
    those of them a test report is made of (checked after every phase); ``known_classes``: ids of
    the direct subclasses of ``object`` and the builtin value types that exist now (see
    :func:`_classes_from`), and ``known_modules`` those of the modules imported now (none is the
    candidate's), both kept alive by ``self._alive``. A class entry also holds its members'
    names and values as tuples, and ``callable_groups`` the callables per module, for
    :func:`_unchanged`.
    """

    def __init__(self):
        self.callables = {}
        self.classes = []
        self.critical = []
        for module_name in _WATCHED_MODULES:
            module = sys.modules.get(module_name)
            if module is None:
                continue
            for key, value in list(vars(module).items()):
                if key.startswith("__") or key in _DYNAMIC_GLOBALS:
                    continue
                if isinstance(value, type) or callable(value):
                    self.callables[(module, module_name, key)] = value
                if isinstance(value, type) and getattr(value, "__module__", None) == module_name:
                    members = _class_members(value)
                    entry = (value, len(vars(value)), members, tuple(members), tuple(members.values()))
                    self.classes.append(entry)
                    if value.__name__ in _CRITICAL_CLASSES:
                        self.critical.append(entry)
        self.callable_groups = _group_callables(self.callables)
        self._alive = [type.__subclasses__(base) for base in _VALUE_TYPES] + [list(sys.modules.values())]
        self.known_classes = frozenset(id(sub) for subs in self._alive[:-1] for sub in subs)
        self.known_modules = frozenset(id(module) for module in self._alive[-1])


_MISSING = object()


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
        self.importable = {}  # module name -> found by this interpreter (cached: it does not change)
        self._path_fixes = None
        self._path_fixes_for = 0
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
            self.path_map = []  # (sys.path entry, its /proc/self/fd/N form), for packages imported already
            for entry in sys.path:
                try:
                    fd = os.open(entry, os.O_RDONLY | os.O_DIRECTORY)
                except OSError:
                    continue
                self.import_path.append("/proc/self/fd/%d" % fd)
                self.path_map.append((entry.rstrip("/") + "/", "/proc/self/fd/%d/" % fd))
        if not self.in_container:
            uid = self.drop_to[0] if self.drop_to else os.getuid()
            self.nproc = _count_processes(uid) + int(config.get("pids_limit", 128))
        self.session = None  # the fork server's pytest session (see serve_in_session), when it has one
        self.pristine = None  # its _PytestSnapshot, taken before the first fork (for the monitor)

    # -- one run --------------------------------------------------------------------------

    def pytest_args(self, workdir, test_file):
        inifile = os.path.join(workdir, ".pytest.ini")  # read before any candidate code runs
        return [
            "-q", "--no-header", "--tb=short", "-p", "no:cacheprovider", "--noconftest",
            "-c", inifile, "--rootdir", workdir, "-o", "addopts=", "-o", "python_files=test_*.py",
            "--capture=" + str(self.config.get("capture", "fd")),
            os.path.join(workdir, test_file),
        ]

    def run(self, request):
        self.runs += 1
        started = time.monotonic()
        workdir = os.path.join(self.base, "run")
        inifile = os.path.join(workdir, ".pytest.ini")
        files = request["files"]
        test_file = request.get("test_file", "test_solution.py")
        session = self.session if test_file == "test_solution.py" else None
        profile = bool(request.get("profile"))
        timeout = float(request["timeout"])
        output_limit = int(request.get("output_limit", 1 << 20))
        for name in files:
            if not name or "/" in name or name.startswith(".") or name in ("conftest.py",):
                return {"op": "result", "harness_error": "refusing file name %r" % (name,)}
        missing = self.missing_modules(files.get(test_file, ""), files)
        if missing:  # the tests cannot run here whatever the candidate wrote: an environment defect
            return {"op": "result", "missing_modules": missing}
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
        _enlarge_pipe(rep_r)
        _enlarge_pipe(out_r)
        args = self.pytest_args(workdir, test_file)
        path_fixes = self.package_path_fixes() if self.drop_to else ()
        forked = time.monotonic()
        pid = os.fork()
        if pid == 0:  # the child never returns
            self._child(
                workdir, args, timeout, rep_w, out_w, [rep_r, out_r, self.proto_in, self.proto_out, *self.wake],
                test_file, list(files), session, forked if profile else None, path_fixes,
            )
        os.close(rep_w)
        os.close(out_w)

        output = _CappedOutput(output_limit)
        sinks = {rep_r: report, out_r: output}
        status = None
        usage = None
        timed_out = False
        deadline = started + timeout
        open_fds = [rep_r, out_r]
        for fd in open_fds:
            os.set_blocking(fd, False)
        # Read until the child exits (not until EOF: a background process may hold the pipes).
        # Woken by SIGCHLD, and every _DRAIN_S to empty the (enlarged) pipes: not by each line
        # the child writes, which on a busy CPU would switch to this process and back a dozen
        # times per run. Everything is read before the verdict either way.
        while status is None:
            wait = deadline - time.monotonic()
            if wait <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([self.wake[0]], [], [], min(wait, _DRAIN_S))
            if ready:  # SIGCHLD arrived
                while _drain(self.wake[0]):
                    pass
            for fd in list(open_fds):
                if not _read_available(fd, sinks[fd]):
                    open_fds.remove(fd)
            done, code, usage = os.wait4(pid, os.WNOHANG)
            if done:
                status = code
        exited = time.monotonic()
        strays = self._kill_everything(pid)
        if status is None:
            for _ in range(200):
                done, code, usage = os.wait4(pid, os.WNOHANG)
                if done:
                    status = code
                    break
                time.sleep(0.005)
        # Everything that could write is dead now: drain what is left in the pipes.
        for fd in (rep_r, out_r):
            if fd in open_fds:
                _read_available(fd, sinks[fd])
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
        if profile and result.get("profile") is not None:
            result["profile"]["cleanup"] = time.monotonic() - exited
            if usage is not None:  # the child's own CPU, and its page faults (mostly copy-on-write)
                result["profile"].update(cpu_user=usage.ru_utime, cpu_system=usage.ru_stime, page_faults=float(usage.ru_minflt))
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

    def _child(self, workdir, args, timeout, rep_w, out_w, close_fds, test_file, files, session, forked, path_fixes):
        profile = None
        try:
            if forked is not None:
                profile = {"fork": time.monotonic() - forked}
            capture = session.config.pluginmanager.getplugin("capturemanager") if session is not None else None
            if capture is not None:
                # No run may see another's output: the fork server stopped its session's
                # capturing before serving (then this does nothing), and the run starts its own,
                # pointed at this run's pipe below, in _ForkServerPlugin.
                capture.stop_global_capturing()
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
                # Packages imported before the drop (encodings, email...) find their submodules
                # through __path__, not sys.path: point those at the open directories too.
                for paths, opened in path_fixes:
                    paths[:] = opened
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
            monitor = None
            if self.config.get("monitor", True):
                monitor = _Monitor(workdir, os.path.join(workdir, test_file), [n for n in files if n != test_file])
                monitor.install()
            reporter = _make_reporter(rep_w, nonce, monitor)
            del nonce
            if forked is not None:
                patch = _profile_rewriting(profile)
                if monitor is not None and patch is not None:
                    monitor.harness_patches.append(patch)
                profile["setup"] = time.monotonic() - forked - profile["fork"]
                profile["t_main"] = time.monotonic()
                reporter.profile = profile
            if session is not None:  # go back up into the session's collection (see serve_in_session)
                raise _RunInThisChild(reporter, monitor, capture)
            code = pytest.main(args, plugins=[reporter])
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except Exception:
                pass
            os._exit(int(code))
        except _RunInThisChild:
            raise
        except BaseException:
            try:
                os.write(2, traceback.format_exc().encode("utf-8", "replace"))
            finally:
                os._exit(70)

    def package_path_fixes(self):
        """(a package's ``__path__`` list, its /proc/self/fd form) for the imported packages, computed
        once here so that a child's privilege drop only assigns them."""
        if self._path_fixes is None or len(sys.modules) != self._path_fixes_for:
            ordered = sorted(self.path_map, key=lambda pair: -len(pair[0]))
            fixes = []
            for module in list(sys.modules.values()):
                paths = getattr(module, "__path__", None)
                if isinstance(paths, list):
                    opened = [_remap(p, ordered) for p in paths]
                    if opened != paths:
                        fixes.append((paths, opened))
            self._path_fixes, self._path_fixes_for = fixes, len(sys.modules)
        return self._path_fixes

    def missing_modules(self, test_source, files):
        """Modules the test file needs (:func:`needed_modules`) that this interpreter cannot find."""
        import importlib.util

        missing = []
        for name in sorted(needed_modules(test_source)):
            if name + ".py" in files or name in files:
                continue  # one of the run's own files
            if name not in self.importable:
                try:
                    self.importable[name] = importlib.util.find_spec(name) is not None
                except (ImportError, ValueError):
                    self.importable[name] = False
            if not self.importable[name]:
                missing.append(name)
        return missing

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

    def serve_in_session(self):
        """Serve from inside a pytest session, so that every run forks at the start of collection.

        ``pytest.main`` runs here once, on the fixed work dir's test file: it parses the command
        line, loads and configures the plugins and starts the session (about half of what a
        whole ``pytest.main`` costs per run), then calls ``pytest_collection``, where
        :class:`_ForkServerPlugin` serves requests. Each run's child leaves the serve loop
        (:class:`_RunInThisChild`) and returns from that hook, so pytest goes on to collect and
        run the run's files, and the child exits with pytest's code. No candidate code ever runs
        before the fork, and nothing of a child flows back. Returns False when pytest could not
        start a session (then :meth:`serve` serves plain ``pytest.main`` runs).
        """
        import pytest

        workdir = os.path.join(self.base, "run")
        plugin = _fork_server_plugin(self)
        try:
            os.mkdir(workdir, 0o700)
            with open(os.path.join(workdir, ".pytest.ini"), "w") as handle:
                handle.write("[pytest]\n")
            code = pytest.main(self.pytest_args(workdir, "test_solution.py"), plugins=[plugin])
        except _RunInThisChild:
            raise AssertionError("unreachable: the child returns from the collection hook")
        except Exception:
            code = None
        if plugin.child:  # a run's pytest is done: its exit code ends the child
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except Exception:
                pass
            os._exit(int(code) if code is not None else 70)
        _remove(workdir)
        return plugin.served


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


def _make_reporter_slot():
    import pytest

    class _ReporterSlot:
        """The fork server's stand-in for a run's reporter plugin (see :func:`_make_reporter`):
        registered with its session once, it forwards every hook to ``reporter``, which only a
        run's child sets (before any candidate code runs)."""

        reporter = None

        def pytest_collectreport(self, report):
            if self.reporter is not None:
                self.reporter.pytest_collectreport(report)

        def pytest_collection_finish(self, session):
            if self.reporter is not None:
                self.reporter.pytest_collection_finish(session)

        def pytest_runtest_logreport(self, report):
            if self.reporter is not None:
                self.reporter.pytest_runtest_logreport(report)

        def pytest_sessionfinish(self, session, exitstatus):
            if self.reporter is not None:
                self.reporter.pytest_sessionfinish(session, exitstatus)

        @pytest.hookimpl(tryfirst=True)
        def pytest_unconfigure(self, config):
            if self.reporter is not None:
                self.reporter.pytest_unconfigure(config)

    return _ReporterSlot()


class _RunInThisChild(BaseException):
    """Raised in a run's child to unwind from the serve loop back into the pytest session."""

    def __init__(self, reporter, monitor, capture):
        super().__init__()
        self.reporter, self.monitor, self.capture = reporter, monitor, capture


def _fork_server_plugin(worker):
    """The plugin that serves requests from pytest's collection hook (see :meth:`Worker.serve_in_session`)."""
    import pytest

    class _ForkServerPlugin:
        """Serves requests from pytest's collection hook (see :meth:`Worker.serve_in_session`)."""

        def __init__(self, worker):
            self.worker = worker
            self.served = False
            self.child = False

        @pytest.hookimpl(tryfirst=True)
        def pytest_collection(self, session):
            # tryfirst: before pytest's own collection, which only children go on to.
            if self.served:
                return None
            self.served = True
            _remove(os.path.join(self.worker.base, "run"))  # each run makes it anew
            self.worker.session = session
            # The session captured output into files of this process's: every run starts its own.
            capture = session.config.pluginmanager.getplugin("capturemanager")
            if capture is not None:
                capture.stop_global_capturing()
            # Registered here once (registering a plugin costs about a millisecond); in a child
            # it forwards to that run's reporter, made there after the fork.
            slot = _make_reporter_slot()
            session.config.pluginmanager.register(slot, "gcop-reporter")
            _warm_caches()
            if self.worker.config.get("monitor", True):
                self.worker.pristine = _PytestSnapshot()
            # Everything alive now lives as long as the server: keep the children's garbage
            # collector off it (less work per collection, fewer copy-on-write page faults).
            gc.freeze()
            try:
                self.worker.serve()
            except _RunInThisChild as run:
                self.child = True
                if run.capture is not None:
                    run.capture.start_global_capturing()
                    run.capture.suspend_global_capture()
                slot.reporter = run.reporter
                run.reporter.mark("t_sessionstart")
                terminal = session.config.pluginmanager.getplugin("terminalreporter")
                if terminal is not None and hasattr(terminal, "_sessionstarttime"):
                    terminal._sessionstarttime = time.time()  # "N passed in Xs" counts this run only
                if run.monitor is not None:
                    run.monitor.snapshot(session, self.worker.pristine)
                return None  # pytest's own pytest_collection collects this run's test file
            os._exit(0)  # the host asked the fork server to exit

    return _ForkServerPlugin(worker)


def _remap(path, path_map):
    for original, opened in path_map:  # longest first
        if (path + "/").startswith(original):
            return opened + path[len(original):] if len(path) >= len(original) else opened.rstrip("/")
    return path


def _profile_rewriting(profile):
    """Time pytest's assertion rewriting of the test file (profiling runs only; verdict-neutral)."""
    try:
        from _pytest.assertion import rewrite
    except ImportError:
        return None
    original = rewrite._rewrite_test

    def timed(*args, **kwargs):
        started = time.monotonic()
        try:
            return original(*args, **kwargs)
        finally:
            profile["rewrite"] = profile.get("rewrite", 0.0) + time.monotonic() - started

    rewrite._rewrite_test = timed
    return rewrite, rewrite.__name__, "_rewrite_test", timed


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


def _read_available(fd, sink):
    """Feed ``sink`` what the non-blocking pipe ``fd`` holds now; False at end of file."""
    while True:
        try:
            data = os.read(fd, _CHUNK)
        except BlockingIOError:
            return True
        if not data:
            return False
        sink.feed(data)


def _enlarge_pipe(fd):
    """Give a pipe 1 MiB of buffer (Linux), so that the child rarely waits for the server to read."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), _PIPE_SIZE)
    except (OSError, ImportError):
        pass  # the default 64 KiB: slower for a run that writes a lot, nothing else


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
        "statistics", "fractions", "decimal", "datetime", "unittest.mock", "tempfile", "resource",
    ):
        try:
            importlib.import_module(name)
        except Exception:
            pass


def _warm_caches():
    """Fill, once before forking, caches that every failing run would otherwise fill in its child.

    A failure's traceback (``--tb=short``) reads the test's source through ``inspect``, whose
    first ``getmodule`` maps every imported module's file (a ``realpath`` each: about 4 ms per
    failing run), and ``tokenize``, whose first use compiles its regular expressions. Only the
    modules imported now (pytest's, the stdlib's) are mapped; a run's own modules are added in
    its child as before, so what a traceback shows does not change.
    """
    import inspect
    import io
    import tokenize

    try:
        inspect.getmodule(compile("", os.path.join(os.sep, "gcop-warm-up", "none.py"), "exec"))
        list(tokenize.generate_tokens(io.StringIO("def f(a):\n    return a  # x\n").readline))
        inspect.getblock(["def f(a):\n", "    return a\n"])
    except Exception:  # a cache left cold costs time, never a verdict
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
    if config.get("session", True) and worker.serve_in_session():
        return 0
    worker.session = None
    worker.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
