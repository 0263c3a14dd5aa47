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
import functools
import gc
import json
import operator
import os
import re
import select
import shutil
import signal
import _signal
import struct
import sys
import time
import traceback
from importlib.machinery import PathFinder, SourceFileLoader

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


def _make_emitter(fd, nonce):
    """``emit(event)``: one report record to ``fd``; the nonce lives only in this closure."""
    prefix = (nonce + " ").encode("ascii")

    def emit(event):
        try:
            _write_all(fd, prefix + json.dumps(event).encode("utf-8") + b"\n")
        except OSError:
            pass

    return emit


def _make_reporter(emit, monitor=None):
    """A pytest plugin that reports through ``emit`` (:func:`_make_emitter`).

    ``monitor`` (a :class:`_Monitor`) is asked for findings at collection's end, after every
    test phase and at the session's end; each finding goes out as a ``tamper`` record before
    the record that follows it, so a forged result never reaches the report unflagged.
    """
    import pytest

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
                emit(_profile_record(p, p.get("rewrite", 0.0)))
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


def _profile_record(marks, rewrite):
    """The ``profile`` record of a run (seconds per phase) from its child's time marks; ``rewrite``:
    the assertion rewriting's share (pytest's in the child, or the plain runner's plan in the server)."""
    return {"ev": "profile", "fork": marks["fork"], "setup": marks["setup"], "rewrite": rewrite,
            "config": marks["t_sessionstart"] - marks["t_main"], "collect": marks["t_collected"] - marks["t_sessionstart"],
            "tests": marks["t_tested"] - marks["t_collected"], "monitor": time.monotonic() - marks["t_tested"]}


def expected_test_names(source):
    """Names of the test functions a test file defines (``test*`` and ``Test*.test*``)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    return _expected_in(tree)


def _expected_in(tree):
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
    return _needed_in(tree, "importorskip" in source)


_BLOCK_FIELDS = ("body", "orelse", "finalbody", "handlers", "cases")


def _blocks(node):
    """The statements (and except handlers, match cases) directly inside ``node``."""
    for field in _BLOCK_FIELDS:
        value = getattr(node, field, None)
        if type(value) is list:
            yield from value


def _needed_in(tree, expressions=True):
    """:func:`needed_modules` of a parsed file; ``expressions=False`` looks at statements only
    (enough when the text has no ``importorskip``, the one call it reads)."""
    names = set()
    children = ast.iter_child_nodes if expressions else _blocks

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
        for child in children(node):
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
        self.fallback = None  # why the plain runner handed the file to pytest (before any test ran)

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
            elif kind == "fallback":
                if self.collected is not None or self.phases or self.end is not None:
                    raise ValueError("a fallback after collection")
                self.fallback = str(event["why"])
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
            "fallback": self.fallback,
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
        self.class_versions = self.critical_versions = self.group_versions = None  # (readers, tags) for _changed
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
        self.builtins_version = None  # (reader, tag) of builtins' dict (see _version_watcher)
        self.hooks_fast = None  # see _hooks_unchanged
        self.meta_path = []
        self.path_hooks = []
        self.test_ident = None
        self.in_hook = False
        self.hook_relay = None
        self.atexit_register = None
        self.imported = []  # names of the modules imported during the run (audit events)
        self.sentinel = None
        self.modules_at_start = None  # len(sys.modules) at the fork

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
        self.sentinel = []  # young, GC-tracked: see _young_classes
        sys.addaudithook(self.audit)

    def audit(self, event, args):
        if event == "import":  # a module not imported yet (see _probe_equality)
            self.imported.append(args[0])
            return
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
        pristine = pristine or _PytestSnapshot()
        self.classes, self.critical = pristine.classes, pristine.critical
        self.class_versions, self.critical_versions = pristine.class_versions, pristine.critical_versions
        self.callable_groups, self.known_classes = pristine.callable_groups, pristine.known_classes
        self.known_modules = pristine.known_modules
        if self.harness_patches:  # the harness's own (profiling) patches are not the candidate's
            callables = dict(pristine.callables)
            for module, module_name, key, value in self.harness_patches:
                callables[(module, module_name, key)] = value
            versions = {id(group[0]): group[4] for group in pristine.callable_groups}  # a patched module's changed
            self.callable_groups = [group[:4] + (versions.get(id(group[0])),) for group in _group_callables(callables)]
        self.group_versions = _versions_of(self.callable_groups)
        hook = self.hook_relay = session.config.hook
        if pristine.state is None or not pristine.state_current(hook):
            pristine.take_state(hook)  # (in the child: slower, as many copy-on-write page faults)
        (hooks, self.builtins, self.imports, self.builtins_items, self.imports_items, self.modules_at_start,
         self.builtins_version, self.hooks_fast) = pristine.state
        self.hooks = {name: list(impls) for name, impls in hooks.items()}  # the checks add pytest's own late ones
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
        entries = self.classes if full else self.critical
        for cls, size, members, keys, values, version in _changed(entries, self.class_versions if full else self.critical_versions):
            now = vars(cls)
            if len(now) == size and _unchanged(now, keys, values):
                continue  # the common case, without building anything
            current = _class_members(cls)
            for key in set(members) | set(current):
                if members.get(key) is not current.get(key):
                    self.flag("pytest_internals", "patches %s.%s.%s" % (cls.__module__, cls.__qualname__, key),
                              self.where(_code_of(current.get(key))))
        if full:
            for module, module_name, keys, values, version in _changed(self.callable_groups, self.group_versions):
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
        for name, impls in () if _hooks_unchanged(self.hooks_fast) else self.hooks.items():
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
        version = self.builtins_version
        same = (version is not None and version[0].value == version[1]) or _unchanged(current, *self.builtins_items)
        for key in () if same else self.builtins:
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

    def _new_modules(self):
        """The modules added to ``sys.modules`` since the fork: those the audit hook saw imported,
        when they account for every new entry (it touches none of the fork server's modules, whose
        pages each child would otherwise copy), else every module in ``sys.modules``."""
        names = [name for name in dict.fromkeys(self.imported) if name in sys.modules]
        if self.modules_at_start is not None and len(sys.modules) - self.modules_at_start == len(names):
            return [sys.modules[name] for name in names]
        return list(sys.modules.values())

    def _probe_equality(self, everywhere):
        """Classes the candidate defined: does an ``__eq__`` equal anything (``__ne__`` differ from nothing)?

        After collection, the classes in the candidate's modules; at the end (``everywhere``),
        also the classes its functions built at run time (``type(...)``) on ``object`` or a
        builtin value type, found through ``__subclasses__`` (the static layer reads the rest).
        """
        if self.candidate_modules is None:  # after collection the candidate's modules are imported
            self.candidate_modules = [
                m for m in self._new_modules()
                if id(m) not in self.known_modules and getattr(m, "__file__", None) in self.candidate_files
            ]
        modules = self.candidate_modules
        names = {m.__name__ for m in modules}
        classes = [value for module in modules for value in list(vars(module).values()) if isinstance(value, type)]
        if everywhere:
            young = _young_classes(names, self.sentinel)
            classes += young if young is not None else _classes_from(names, self.known_classes)
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
                    result = method(_Unrelated(), _Unrelated())
                except BaseException:
                    continue
                if result is expect or (expect and result is not NotImplemented and type(result) is not bool and bool(result)):
                    self.flag(
                        "always_equal",
                        "%s.%s returns %r for two unrelated objects" % (cls.__qualname__, name, result),
                        self.where(code),
                    )


class _Unrelated:
    """What the equality probe compares (made by the server: a class made in each run's child
    would add itself to ``object``'s subclasses, copying that table's pages)."""


_VALUE_TYPES = (object, int, float, complex, str, bytes, list, tuple, dict, set, frozenset)


def _young_classes(module_names, sentinel):
    """The classes of the candidate's modules among the objects made since the fork, or None.

    The fork server froze every object it had (``gc.freeze``) before forking, so the garbage
    collector's three young generations hold what the run made (and the little the server made
    since): every class the candidate built, with ``class`` or ``type(...)``, on any base. A
    list of those touches none of the server's thousands of classes, which
    :func:`_classes_from`'s walk of ``__subclasses__`` does (copying their pages). ``sentinel``,
    made right after the fork, must still be among them: if the candidate froze the collector
    itself (hiding its classes from this list) it is not, and the caller walks instead.
    """
    objects = gc.get_objects(0) + gc.get_objects(1) + gc.get_objects(2)
    if not any(map(functools.partial(operator.is_, sentinel), objects)):
        return None
    return [cls for cls in filter(_IS_CLASS, objects) if getattr(cls, "__module__", None) in module_names]


_IS_CLASS = type.__instancecheck__.__get__(type)


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


def _group_callables(callables, watch=None):
    """(module, its name, keys, values, version) per module, from {(module, its name, key): value};
    ``version``: ``watch(vars(module))`` (see :func:`_version_watcher`), or None."""
    groups = {}
    for (module, module_name, key), value in callables.items():
        entry = groups.setdefault(id(module), (module, module_name, [], []))
        entry[2].append(key)
        entry[3].append(value)
    return [
        (module, name, tuple(keys), tuple(values), watch(vars(module)) if watch is not None else None)
        for module, name, keys, values in groups.values()
    ]


def _versions_of(entries):
    """(readers, tags) of entries whose last item is a version (see :func:`_version_watcher`),
    for :func:`_changed`; None when any entry has none."""
    versions = [entry[-1] for entry in entries]
    if not versions or any(version is None for version in versions):
        return None
    return tuple(reader for reader, _ in versions), tuple(tag for _, tag in versions)


_VALUE = operator.attrgetter("value")


def _changed(entries, versions):
    """The entries whose dict may have changed: all of them without ``versions`` (from
    :func:`_versions_of`), else those whose version differs. The common case, nothing changed,
    reads the version tags in one C loop and touches no entry (nor the class or module in it)."""
    if not versions:
        return entries
    readers, tags = versions
    if tuple(map(_VALUE, readers)) == tags:
        return ()
    return [entry for entry, reader, tag in zip(entries, readers, tags) if reader.value != tag]


def _impl_lists(caller):
    """The lists a pluggy hook caller keeps its implementations in (one in pluggy >= 1.1, two before)."""
    if hasattr(caller, "_hookimpls"):
        return (caller._hookimpls,)
    return caller._nonwrappers, caller._wrappers


def _hooks_fast(relay, hooks, watch):
    """What :func:`_hooks_unchanged` compares: the hook relay's dict version, the watched hook
    callers, copies of their implementation lists, and the versions of the implementations'
    dicts; None where pluggy keeps any of these elsewhere (then the monitor compares each
    implementation, as always)."""
    try:
        if watch is None:
            return None
        callers = tuple(getattr(relay, name) for name in hooks)
        lists = tuple(tuple(list(part) for part in _impl_lists(caller)) for caller in callers)
        impls = [impl for parts in lists for part in parts for impl in part]
        versions = _versions_of([(watch(vars(impl)),) for impl in impls])
        if versions is None or sorted(map(id, impls)) != sorted(id(i) for impls_ in hooks.values() for i, _ in impls_):
            return None
        return watch(vars(relay)), callers, lists, versions
    except (AttributeError, TypeError):  # (an implementation with __slots__ has no vars())
        return None


def _hooks_unchanged(fast):
    """True when no watched hook caller, implementation list or implementation has changed since
    :func:`_hooks_fast` (compared without touching the implementations: see _version_watcher)."""
    if fast is None:
        return False
    relay_version, callers, lists, versions = fast
    return (
        relay_version[0].value == relay_version[1]
        and all(map(operator.eq, map(_impl_lists, callers), lists))
        and tuple(map(_VALUE, versions[0])) == versions[1]
    )


def _version_watcher():
    """``watch(d) -> (reader, tag)``: ``reader.value`` is ``d``'s version tag now, ``tag`` what it
    is at the call; None where this interpreter has no such tag.

    CPython gives every dict a version (PEP 509's ``ma_version_tag``) that changes whenever the
    dict does: set, delete, replace, clear. Reading it through ctypes touches none of the dict's
    entries; comparing the entries themselves increments the reference count of every value,
    which in a forked child copies every page those values live on (the monitor compares some
    2000 functions and classes after collection and at the end: hundreds of page copies per
    run). An unchanged version means the dict is as it was; a changed one sends the check to the
    entry-by-entry comparison, as before. Checked on a probe dict before use (layout, build).
    """
    try:
        import ctypes
    except Exception:
        return None
    if sys.implementation.name != "cpython":
        return None
    offset = 3 * ctypes.sizeof(ctypes.c_void_p)  # after ob_refcnt, ob_type and ma_used

    def watch(d):
        reader = ctypes.c_uint64.from_address(id(d) + offset)
        return reader, reader.value

    try:
        probe = {"a": 1, "b": 2}
        reader, tag = watch(probe)
        steady = reader.value == tag and len(probe) == 2
        probe["a"] = 3  # same size and keys: only the version can tell
        replaced = reader.value
        del probe["b"]
        deleted = reader.value
        probe["b"] = 2
        added = reader.value
        other = {"a": 1, "b": 2}
        if steady and len({tag, replaced, deleted, added}) == 4 and watch(other)[1] not in (tag, replaced, deleted):
            return watch
    except Exception:
        pass
    return None


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
        self.watch = watch = _version_watcher()
        for module_name in _WATCHED_MODULES + (__name__,):  # and this harness's own functions
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
                    version = None
                    if watch is not None:
                        real = [d for d in gc.get_referents(vars(value)) if type(d) is dict]
                        version = watch(real[0]) if len(real) == 1 else None
                    entry = (value, len(vars(value)), members, tuple(members), tuple(members.values()), version)
                    self.classes.append(entry)
                    if value.__name__ in _CRITICAL_CLASSES:
                        self.critical.append(entry)
        self.callable_groups = _group_callables(self.callables, watch)
        self.class_versions, self.critical_versions = _versions_of(self.classes), _versions_of(self.critical)
        self.state = None  # see take_state
        self._alive = [type.__subclasses__(base) for base in _VALUE_TYPES] + [list(sys.modules.values())]
        self.known_classes = frozenset(id(sub) for subs in self._alive[:-1] for sub in subs)
        self.known_modules = frozenset(id(module) for module in self._alive[-1])


    def take_state(self, hook):
        """The hook implementations, ``builtins`` and watched ``sys.modules`` entries the monitor
        compares with: taken once by the fork server (when it forks inside a session), so that no
        child walks ``sys.modules`` (each module it touches costs it a copied page)."""
        import builtins

        hooks = {}
        for name in _WATCHED_HOOKS:
            caller = getattr(hook, name, None)
            if caller is not None:
                hooks[name] = tuple((impl, impl.function) for impl in caller.get_hookimpls())
        names = dict(vars(builtins))
        imports = {
            name: module for name, module in list(sys.modules.items())
            if name in _WATCHED_IMPORTS or name.split(".")[0] in ("pytest", "_pytest", "pluggy")
        }
        self.state = (hooks, names, imports, (tuple(names), tuple(names.values())),
                      (tuple(imports), tuple(imports.values())), len(sys.modules),
                      self.watch(vars(builtins)) if self.watch is not None else None,
                      _hooks_fast(hook, hooks, self.watch))
        self._state_of = (hook, len(sys.modules), len(names))

    def state_current(self, hook):
        """Whether :meth:`take_state` describes now (the server imports nothing once serving)."""
        import builtins

        return self._state_of == (hook, len(sys.modules), len(vars(builtins)))


_MISSING = object()


# --------------------------------------------------------------------------- the plain runner
#
# Most test files (all but a handful of KodCode's and HumanEval's) are a few module-level
# ``def test_x():`` functions with plain asserts: no fixtures, marks, classes or hooks. For those
# the child does not need pytest's collection and runtest machinery, which costs more than the
# tests (about 14 of a warm validation's 21 ms of CPU): the plain runner imports the test file
# and calls its test functions itself, inside the same fork, limits and monitor, and reports the
# same records (collected, setup/call/teardown phases, end) to the same parser, so the verdict
# and the pass rule do not change. What decides a test's outcome is pytest's own code where it
# matters: pytest's output capture (fd), warning filters, logging handlers and
# ``pytest_pyfunc_call``; pytest's rules for turning an exception into passed/failed/skipped,
# and for an interrupted session. A test function runs with the recursion headroom it has
# under pytest (measured once per fork server: :meth:`Worker.calibration`).
#
# Eligibility is decided twice. Before the fork, from the file's syntax (:func:`_plain_tests`);
# after the import, from the module's namespace by pytest's collection rules (anything pytest
# would collect differently: a class, a fixture, a marked or generator test, a setup hook). When
# the second check fails, or the import raises, the child reports ``fallback`` before any test
# has run and the server runs the request again, from scratch, under pytest: the verdict of such
# a run is pytest's alone. ``runner="pytest"`` in a request skips the plain runner.

_RESERVED_NAMES = frozenset((
    "pytestmark", "pytest_plugins", "__test__", "collect_ignore", "collect_ignore_glob", "setup", "teardown",
    "setup_module", "teardown_module", "setUpModule", "tearDownModule", "setup_function", "teardown_function",
))
_COMPARE_OPS = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
                ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not"}
_ASSERT_HELPER = "@gcop_ar"  # not an identifier: the test file's own code cannot name it
_CO_NOT_PLAIN = 0x20 | 0x80 | 0x100 | 0x200  # generator, coroutine, iterable coroutine, async generator
_PLAN_CACHE_SIZE = 256  # test files kept analysed and compiled (an RL step validates each one G times)


def _reserved(name):
    """A name pytest gives a meaning in a test module, other than a ``test*`` function."""
    return name in _RESERVED_NAMES or name.startswith(("pytest_", "Test"))


class _Plan:
    """What the server reads from a test file before a run: one ``ast.parse`` for all of it.

    ``expected``: the test names it defines (:func:`expected_test_names`); ``needed``: the modules it
    imports (:func:`needed_modules`); ``tests``: its test functions in order when the plain runner
    can run it (else None, and ``why_not`` says why); ``code``: the file compiled with
    :class:`_AssertRewriter`, for the plain runner.
    """

    __slots__ = ("expected", "needed", "tests", "why_not", "code", "seconds")

    def __init__(self, source, path):
        started = time.monotonic()
        self.tests = self.code = None
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError, MemoryError, RecursionError):
            self.expected, self.needed, self.why_not = None, set(), "does not parse"
        else:
            self.expected, self.needed = _expected_in(tree), _needed_in(tree, "importorskip" in source)
            self.tests, self.why_not = _plain_tests(tree, any(word in source for word in (":=", "global", "nonlocal")))
            if self.tests is not None:
                try:
                    _AssertRewriter().rewrite(tree)
                    self.code = compile(tree, path, "exec", dont_inherit=True)
                except Exception as exc:  # pragma: no cover - a valid tree compiles
                    self.tests, self.why_not = None, "does not compile (%s)" % type(exc).__name__
        self.seconds = time.monotonic() - started


def _plain_tests(tree, scan=True):
    """(test function names in order, None) when every top-level statement is one the plain
    runner handles like pytest, else (None, why not). ``scan=False`` skips the search for
    assignment expressions and ``global`` statements (when the text has none)."""
    names = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:  # (what a star import binds is checked after the import)
                bound = alias.asname or alias.name.split(".")[0]
                if alias.name != "*" and (bound.startswith("test") or _reserved(bound)):
                    return None, "imports the name %s" % bound
        elif isinstance(node, ast.FunctionDef):
            if node.decorator_list:
                return None, "a decorated function (%s)" % node.name
            if node.name.startswith("test"):
                args = node.args
                if args.posonlyargs or args.args or args.vararg or args.kwonlyargs or args.kwarg:
                    return None, "test %s takes arguments (fixtures)" % node.name
                if node.name not in names:
                    names.append(node.name)
            elif _reserved(node.name):
                return None, "defines %s" % node.name
        elif isinstance(node, ast.ClassDef):
            if node.decorator_list or _reserved(node.name) or node.name.startswith("test"):
                return None, "a test class or decorated class (%s)" % node.name
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                for sub in ast.walk(target):
                    if isinstance(sub, ast.Name) and (sub.id.startswith("test") or _reserved(sub.id)):
                        return None, "assigns %s" % sub.id
                    if isinstance(sub, ast.Attribute) and (sub.attr.startswith("test") or _reserved(sub.attr)):
                        return None, "assigns .%s" % sub.attr
        elif isinstance(node, ast.Expr):
            if not (isinstance(node.value, ast.Constant) or _is_sys_path_call(node.value)):
                return None, "a top-level expression"
        elif isinstance(node, ast.If) and _is_main_guard(node.test) and not node.orelse:
            continue  # never true under either runner
        else:
            return None, "a top-level %s" % type(node).__name__
    for sub in ast.walk(tree) if scan else ():  # names bound from inside expressions or functions
        if isinstance(sub, ast.NamedExpr) and isinstance(sub.target, ast.Name):
            return None, "an assignment expression at import"
        if isinstance(sub, (ast.Global, ast.Nonlocal)):
            return None, "a global statement"
    if not names:
        return None, "no test functions"
    return names, None


def _is_sys_path_call(value):
    func = value.func if isinstance(value, ast.Call) else None
    return (
        isinstance(func, ast.Attribute) and func.attr in ("insert", "append")
        and isinstance(func.value, ast.Attribute) and func.value.attr == "path"
        and isinstance(func.value.value, ast.Name) and func.value.value.id == "sys"
    )


def _is_main_guard(test):
    return (
        isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__"
        and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)
        and isinstance(test.comparators[0], ast.Constant) and test.comparators[0].value == "__main__"
    )


class _AssertRewriter(ast.NodeTransformer):
    """``assert a OP b[, msg]`` (one comparison) evaluates ``a``, ``b`` and ``a OP b`` once, in
    that order, as a plain ``assert`` does, and on failure raises ``AssertionError`` with both
    values' reprs: ``assert 3 == 4``. Other asserts are left as they are (the traceback shows
    their source line). Far cheaper than pytest's rewriting, which explains every
    sub-expression; the verdict does not depend on it."""

    def __init__(self):
        self.count = 0

    def rewrite(self, node):
        """Rewrite the asserts in ``node``'s statements, and in theirs (statements only hold
        statements in these lists: a walk of every expression would cost five times as much)."""
        for field in _BLOCK_FIELDS:
            block = getattr(node, field, None)
            if type(block) is not list:
                continue
            if any(type(child) is ast.Assert for child in block):
                new = []
                for child in block:
                    replaced = self.visit_Assert(child) if type(child) is ast.Assert else child
                    new.extend(replaced if type(replaced) is list else [replaced])
                block[:] = new
            for child in block:
                if type(child) is not ast.Assert:
                    self.rewrite(child)
        return node

    def visit_Assert(self, node):
        test = node.test
        if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and type(test.ops[0]) in _COMPARE_OPS):
            return node
        self.count += 1
        left, right = "@gcop_l%d" % self.count, "@gcop_r%d" % self.count
        # Every new node gets the assert's position (fix_missing_locations would walk the
        # operands too, and costs more than the rest of the rewrite).
        at = {"lineno": node.lineno, "col_offset": node.col_offset,
              "end_lineno": node.end_lineno, "end_col_offset": node.end_col_offset}

        def load(name):
            return ast.Name(name, ast.Load(), **at)

        def store(name):
            return ast.Name(name, ast.Store(), **at)

        message = ast.Call(
            load(_ASSERT_HELPER),
            [node.msg if node.msg is not None else ast.Constant(None, **at),
             ast.Constant(_COMPARE_OPS[type(test.ops[0])], **at), load(left), load(right)],
            [], **at,
        )
        failed = ast.UnaryOp(ast.Not(), ast.Compare(load(left), [test.ops[0]], [load(right)], **at), **at)
        statements = [
            ast.Assign([store(left)], test.left, **at),
            ast.Assign([store(right)], test.comparators[0], **at),
            ast.If(failed, [ast.Raise(ast.Call(load("AssertionError"), [message], [], **at), None, **at)], [], **at),
            ast.Assign([store(left), store(right)], ast.Constant(None, **at), **at),
        ]
        return statements


def _assert_message(message, op, left, right):
    """The text of a rewritten assert's failure (see :class:`_AssertRewriter`)."""
    try:
        from _pytest._io.saferepr import saferepr
    except ImportError:  # pragma: no cover - pytest is always there
        saferepr = repr
    text = "assert %s %s %s" % (saferepr(left), op, saferepr(right))
    if message is None:
        return text
    try:
        return "%s\n%s" % (message, text)
    except Exception:
        return text


def _make_descend():
    """``descend(frames, func, args)``: ``func(*args)``, called ``frames`` Python calls deeper
    than here. The plain runner imports and calls a test where it has the same recursion
    headroom as under pytest (a solution that recurses close to the limit must pass or fail
    alike); :meth:`Worker.calibration` measures ``frames``. A closure, not a module function
    calling itself by its global name, which the candidate's code could rebind."""

    def descend(frames, func, args):
        if frames > 0:
            return descend(frames - 1, func, args)
        return func(*args)

    return descend


# A test that reports its recursion headroom at import and in its call (Worker.calibration), in
# its failure message.
_PROBE_SOURCE = '''def _headroom():
    def down(depth):
        try:
            return down(depth + 1)
        except RecursionError:
            return depth
    return down(0)

_AT_IMPORT = _headroom()

def test_headroom():
    raise AssertionError("gcop-headroom %d %d" % (_AT_IMPORT, _headroom()))
'''


class _PrecompiledFinder:
    """Finds the run's own modules that the test file imports (``solution``) with the code the
    server compiled from the same bytes before the fork (compiling in the child costs it a
    hundred copied pages). The spec, loader class (a ``SourceFileLoader``), file name and frames
    are those of a normal import; only while the work dir is still first on ``sys.path``
    (where ``PathFinder``, after which it sits, would find the same file), and only for the
    first import of each (a reload reads the file)."""

    @staticmethod
    def find_spec(fullname, path=None, target=None):
        entry = _PRECOMPILED["codes"].get(fullname) if path is None else None
        if entry is None or not sys.path or sys.path[0] != _PRECOMPILED["workdir"]:
            return None
        import importlib.util

        return importlib.util.spec_from_file_location(fullname, entry[0], loader=_PrecompiledLoader(fullname, entry[0]))


# Filled in place in a run's child (rebinding would change the module's dict, which the monitor watches).
_PRECOMPILED = {"codes": {}, "workdir": None}  # module name -> (path, code object); the work dir


class _PrecompiledLoader(SourceFileLoader):
    def get_code(self, fullname):
        entry = _PRECOMPILED["codes"].pop(fullname, None)
        if entry is not None and entry[0] == self.path:
            return entry[1]
        return super().get_code(fullname)


def _precompile(files, test_file, workdir, needed):
    """{module name: (path, code)} of the run's ``.py`` files that the test file imports by name,
    compiled as ``SourceFileLoader`` would compile the file the server writes (its UTF-8 bytes);
    a file that does not compile is left to the import (whose error is the verdict's)."""
    codes = {}
    for name, text in files.items():
        module = name[:-3]
        if name == test_file or not name.endswith(".py") or module not in needed or module.startswith("test"):
            continue
        if module in sys.builtin_module_names:
            continue
        path = os.path.join(workdir, name)
        try:
            codes[module] = (path, compile(text.encode("utf-8"), path, "exec", dont_inherit=True))
        except Exception:
            continue
    return codes


class _PlainItem:
    """What pytest's ``pytest_pyfunc_call`` and the monitor read of a collected test."""

    cls = None

    def __init__(self, name, function, module, nodeid):
        self.name = self.originalname = name
        self.obj = function
        self.module = module
        self.nodeid = nodeid
        self.funcargs = {}
        self._fixtureinfo = self  # pytest reads item._fixtureinfo.argnames
        self.argnames = ()


class _Fallback(Exception):
    """The plain runner cannot run this file like pytest would (raised before any test runs)."""


def _collect_plain(module, plan, test_path, nodeid_prefix):
    """The module's tests by pytest's collection rules, when all of them are plain functions;
    raises :class:`_Fallback` where pytest would collect anything else."""
    from _pytest.fixtures import getfixturemarker

    unittest = sys.modules.get("unittest")
    items = []
    for name, value in list(vars(module).items()):
        if name == _ASSERT_HELPER or name in ("__builtins__", "__file__", "__cached__"):
            continue
        if _reserved(name) and not isinstance(value, type(sys)):  # (``import pytest`` binds a module)
            raise _Fallback("the module defines %s" % name)
        if isinstance(value, type):
            if name.startswith("Test") or (unittest is not None and issubclass(value, unittest.TestCase)):
                raise _Fallback("a test class %s" % name)
            continue
        try:
            fixture = getfixturemarker(value)
            nose = getattr(value, "__test__", False) is True
        except Exception:
            raise _Fallback("an object pytest cannot inspect (%s)" % name)
        if fixture is not None:
            raise _Fallback("a fixture %s" % name)
        if not (name.startswith("test") or nose) or not callable(value):
            continue
        code = getattr(value, "__code__", None) if type(value) is _FUNCTION else None
        if (
            code is None or code.co_filename != test_path or code.co_argcount or code.co_kwonlyargcount
            or code.co_posonlyargcount or code.co_flags & (0x04 | 0x08 | _CO_NOT_PLAIN) or vars(value)
        ):
            raise _Fallback("%s is not a plain test function" % name)
        items.append(_PlainItem(name, value, module, nodeid_prefix + name))
    if [item.name for item in items] != plan.tests:
        raise _Fallback("the module's tests differ from the file's")
    return items


def _outcome_of(exc):
    """pytest's outcome of a test call that raised ``exc`` (``TestReport.from_item_and_call`` and
    the skipping and unittest plugins): skipped for ``pytest.skip``/``pytest.xfail``/``unittest.SkipTest``,
    else failed."""
    from _pytest.outcomes import Skipped, XFailed

    if isinstance(exc, (Skipped, XFailed)):
        return "skipped"
    unittest = sys.modules.get("unittest")
    if unittest is not None and isinstance(exc, unittest.SkipTest):
        return "skipped"
    return "failed"


def _failure_text(exc, tb, test_path, workdir):
    """A short traceback like pytest's ``--tb=short``: from the test function's frame on, then
    ``E   Type: message``."""
    lines = []
    started = False
    for frame in traceback.extract_tb(tb):
        if not started and frame.filename != test_path:
            continue
        if frame.filename.startswith("<frozen importlib"):  # the import machinery (pytest hides it too)
            continue
        started = True
        name = frame.filename
        if name.startswith(workdir + os.sep):
            name = name[len(workdir) + 1:]
        lines.append("%s:%d: in %s" % (name, frame.lineno, frame.name))
        if frame.line:
            lines.append("    " + frame.line)
    try:
        last = traceback.format_exception_only(type(exc), exc)
    except Exception:
        last = ["%s: <unprintable>\n" % type(exc).__name__]
    for part in last:
        for line in part.rstrip("\n").split("\n"):
            lines.append("E   " + line)
    return "\n".join(lines)[:_MESSAGE_LIMIT]


def _plain_summary(outcomes, captured, seconds):
    """The run's output under the plain runner, like ``pytest -q``'s: a progress line, each
    failure with its captured output, and the counts."""
    marks = {"passed": ".", "failed": "F", "skipped": "s"}
    lines = ["".join(marks.get(outcome, "?") for _, outcome, _ in outcomes)]
    output = {name: (out, err) for name, out, err in captured}
    for name, outcome, message in outcomes:
        if message is None:
            continue
        lines.append("_" * 20 + " " + name + " " + "_" * 20)
        lines.append(message)
        out, err = output.get(name, ("", ""))
        for label, text in (("stdout", out), ("stderr", err)):
            if text:
                lines.append("-" * 10 + " Captured %s call " % label + "-" * 10)
                lines.append(text.rstrip("\n")[:_MESSAGE_LIMIT])
    counts = {}
    for _, outcome, _ in outcomes:
        counts[outcome] = counts.get(outcome, 0) + 1
    summary = ", ".join("%d %s" % (counts[k], k) for k in ("failed", "passed", "skipped") if counts.get(k))
    lines.append("%s in %.2fs" % (summary or "no tests ran", seconds))
    return "\n".join(lines) + "\n"



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
        self.plans = {}  # (test file text, path) -> _Plan, least recently used first
        self.pads = None  # frames the plain runner adds before an import and a call (calibration); None: no plain runner
        self.pyfunc_call = None  # pytest's pytest_pyfunc_call, as it was before any run
        self.calibration_state = "off: no pytest session"  # what calibration() found, for the host (hello message)
        self.default_tempdir = None
        if self.in_container:  # the server runs with a run's environment (but HOME) and user: what a run finds
            import tempfile

            tempfile.tempdir = None
            self.default_tempdir = tempfile.gettempdir()

    # -- one run --------------------------------------------------------------------------

    def pytest_args(self, workdir, test_file):
        inifile = os.path.join(workdir, ".pytest.ini")  # read before any candidate code runs
        return [
            "-q", "--no-header", "--tb=short", "-p", "no:cacheprovider", "--noconftest",
            "-c", inifile, "--rootdir", workdir, "-o", "addopts=", "-o", "python_files=test_*.py",
            "--capture=" + str(self.config.get("capture", "fd")),
            os.path.join(workdir, test_file),
        ]

    def plan(self, source, path):
        """The :class:`_Plan` of a test file (cached by its text and path: GRPO validates each
        task's tests once per sampled completion)."""
        key = (source, path)
        plan = self.plans.pop(key, None)
        if plan is None:
            plan = _Plan(source, path)
            if len(self.plans) >= _PLAN_CACHE_SIZE:
                del self.plans[next(iter(self.plans))]
        self.plans[key] = plan  # most recently used last
        return plan

    def run(self, request):
        self.runs += 1
        started = time.monotonic()
        workdir = os.path.join(self.base, "run")
        files = request["files"]
        test_file = request.get("test_file", "test_solution.py")
        session = self.session if test_file == "test_solution.py" else None
        for name in files:
            if not name or "/" in name or name.startswith(".") or name in ("conftest.py",):
                return {"op": "result", "harness_error": "refusing file name %r" % (name,)}
        plan = self.plan(files.get(test_file, ""), os.path.join(workdir, test_file))
        missing = self.missing_modules(plan.needed, files)
        if missing:  # the tests cannot run here whatever the candidate wrote: an environment defect
            return {"op": "result", "missing_modules": missing}
        plain = None
        if request.get("runner", "auto") == "auto" and session is not None and self.pads is not None:
            plain = plan if plan.tests is not None else None
        result = self._run_once(request, files, test_file, session, plan, plain, started)
        fallback = result.pop("fallback", None)
        if plain is not None and fallback is not None and not (result["timed_out"] or result["tampered"]):
            # The plain runner stopped before any test ran: pytest runs the request from scratch.
            result = self._run_once(request, files, test_file, session, plan, None, started)
            result.pop("fallback", None)
            result["runner"] = "pytest (plain runner: %s)" % fallback
        else:
            result["runner"] = "plain" if plain is not None else "pytest"
        return result

    def _run_once(self, request, files, test_file, session, plan, plain, started):
        workdir = os.path.join(self.base, "run")
        inifile = os.path.join(workdir, ".pytest.ini")
        profile = bool(request.get("profile"))
        timeout = float(request["timeout"])
        output_limit = int(request.get("output_limit", 1 << 20))
        os.mkdir(workdir, 0o700)
        for name, text in files.items():
            with open(os.path.join(workdir, name), "w", encoding="utf-8") as handle:
                handle.write(text)
        owned = [workdir] + [os.path.join(workdir, n) for n in files]
        codes = _precompile(files, test_file, workdir, plan.needed) if plain is not None else None
        if plain is None:  # pytest's (empty) ini file, named on its command line
            with open(inifile, "w") as handle:
                handle.write("[pytest]\n")
            owned.append(inifile)
        if self.drop_to:
            os.chmod(self.base, 0o711)
            for path in owned:
                os.chown(path, *self.drop_to)
        expected = plan.expected

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
                test_file, list(files), session, forked if profile else None, path_fixes, plain, codes,
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
        if report.prefix is None and not timed_out:
            # The child writes its nonce before any candidate code runs: it died in the harness.
            text = output.data.decode("utf-8", "replace").strip()
            return {"op": "result", "harness_error": "the run's process ended before any candidate code ran (exit %s, signal %s)%s" % (
                exit_code, signal_name, (": " + text[-_MESSAGE_LIMIT:]) if text else "")}
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

    def _child(self, workdir, args, timeout, rep_w, out_w, close_fds, test_file, files, session, forked, path_fixes, plain, codes):
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
            # What the server made since its own freeze (plans, requests) is the server's too: out
            # of the child's collections, and out of the monitor's list of the run's new objects.
            gc.freeze()
            os.setsid()
            signal.set_wakeup_fd(-1)
            _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)  # (signal.signal's enum conversions cost page copies)
            for fd in close_fds:
                os.close(fd)
            os.dup2(out_w, 1)
            os.dup2(out_w, 2)
            os.close(out_w)
            _signal.signal(_signal.SIGINT, _signal.default_int_handler)
            _signal.signal(_signal.SIGTERM, _signal.SIG_DFL)
            try:  # the kernel's OOM killer should pick the candidate, never the worker
                fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
                try:
                    os.write(fd, b"1000")
                finally:
                    os.close(fd)
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

            # What tempfile.gettempdir() finds with this environment: $TMPDIR (the work dir) for
            # the process backend, else the directory the server found with the same one (the
            # first writable of /tmp, /var/tmp...), without a write test per run.
            tempfile.tempdir = env.get("TMPDIR") or self.default_tempdir
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
            emit = _make_emitter(rep_w, nonce)
            del nonce
            if forked is not None:
                profile["setup"] = time.monotonic() - forked - profile["fork"]
                profile["t_main"] = time.monotonic()
            if plain is not None:
                self._run_plain(plain, codes, workdir, test_file, emit, monitor, capture, profile)
            reporter = _make_reporter(emit, monitor)
            if forked is not None:
                patch = _profile_rewriting(profile)
                if monitor is not None and patch is not None:
                    monitor.harness_patches.append(patch)
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

    def calibration(self):
        """The steps that set up the plain runner, once per fork server, before any candidate code.

        A generator of run requests, each sent back its result: :meth:`serve` runs them from the
        frame it runs every request from, so that the plain runner's stack is measured as it will
        be. A probe test (:data:`_PROBE_SOURCE`) runs under pytest and under the plain runner,
        each reporting its recursion headroom at import and in the test's call; ``pads`` (the
        frames the plain runner adds before each) are set to match, and a third run checks that
        they do. When anything differs or fails, ``pads`` stays None: every run goes to pytest.
        """
        self.pads = None
        if self.session is None or not self.config.get("plain_runner", True):
            self.calibration_state = "off: %s" % ("no pytest session" if self.session is None else "turned off")
            return
        request = {"files": {"test_solution.py": _PROBE_SOURCE}, "timeout": 30.0}

        def headroom(result, runner):
            tests = result.get("tests") or [{}]
            found = re.search(r"gcop-headroom (\d+) (\d+)", tests[0].get("msg", ""))
            if found is None or result.get("runner") != runner:
                raise ValueError("the %s probe run did not report (%s)" % (
                    result.get("runner", runner), result.get("harness_error") or result.get("output", "")[-300:]))
            return int(found.group(1)), int(found.group(2))

        try:
            under_pytest = headroom((yield dict(request, runner="pytest")), "pytest")
            self.pads = (0, 0)
            natural = headroom((yield dict(request, runner="auto")), "plain")
            pads = (natural[0] - under_pytest[0], natural[1] - under_pytest[1])
            if min(pads) < 0:
                raise ValueError("the plain runner has less recursion headroom than pytest (%s vs %s)" % (natural, under_pytest))
            self.pads = pads
            padded = headroom((yield dict(request, runner="auto")), "plain")
            if padded != under_pytest:
                raise ValueError("padding did not match pytest's headroom (%s vs %s)" % (padded, under_pytest))
            self.calibration_state = "on (headroom %d at import, %d in a test; %d and %d frames added)" % (under_pytest + pads)
        except (OSError, ValueError, IndexError) as exc:
            self.pads = None
            self.calibration_state = "off: %s" % (exc,)

    def _run_plain(self, plan, codes, workdir, test_file, emit, monitor, capture, profile):
        """The plain runner, in a run's child (see the section above :class:`_Plan`); never returns."""
        os._exit(self._plain_session(plan, codes, workdir, test_file, emit, monitor, capture, profile, self.pads))

    def _plain_session(self, plan, codes, workdir, test_file, emit, monitor, capture, profile, pads):
        """Import the test file and run its tests; returns the exit code pytest would have.

        Emits what :func:`_make_reporter` would have for the same file, or ``fallback`` when
        pytest must run it instead (before any test has run). The server runs it too, on a
        probe file, before it forks (:func:`_warm_plain_runner`).
        """
        from _pytest.logging import catching_logs
        from _pytest.outcomes import Exit
        from _pytest.warnings import catch_warnings_for_item

        # Everything the runner calls is bound here, before any candidate code runs: rebinding the
        # module's globals later changes nothing it does (and the monitor reports it).
        descend, collect, outcome_of, failure_text, summary = (
            _make_descend(), _collect_plain, _outcome_of, _failure_text, _plain_summary)
        session = self.session
        config = session.config
        hook = config.hook
        logging_plugin = config.pluginmanager.get_plugin("logging-plugin")
        pyfunc_call = self.pyfunc_call
        test_path = os.path.join(workdir, test_file)
        module_name = test_file[:-3]
        prefix = test_file + "::"

        def check(full, nodeid=None):
            if monitor is not None:
                for finding in monitor.check(full=full, nodeid=nodeid):
                    emit(dict(finding, ev="tamper"))

        def mark(phase):
            if profile is not None:
                profile[phase] = time.monotonic()

        if capture is not None:  # started before the monitor's snapshot, as in the pytest child
            capture.start_global_capturing()
        if codes:
            _PRECOMPILED.update(codes=codes, workdir=workdir)
            sys.meta_path.insert(sys.meta_path.index(PathFinder) if PathFinder in sys.meta_path else len(sys.meta_path),
                                 _PrecompiledFinder)
        if monitor is not None:
            monitor.snapshot(session, self.pristine)
        mark("t_sessionstart")
        import types

        module = types.ModuleType(module_name)
        module.__file__ = test_path
        module.__dict__[_ASSERT_HELPER] = _assert_message
        if workdir not in sys.path:
            sys.path.insert(0, workdir)  # pytest's "prepend" import mode
        sys.modules[module_name] = module
        if monitor is not None:
            monitor.imported.append(module_name)  # (an import would have told its audit hook)
        items = None
        try:
            with catch_warnings_for_item(config, hook, "collect", None):
                descend(pads[0], exec, (plan.code, module.__dict__))
            items = collect(module, plan, test_path, prefix)
        except _Fallback as exc:  # pytest would collect something else: pytest decides
            emit({"ev": "fallback", "why": str(exc.args[0])[:200]})
            return 3
        except Exception as exc:  # a collection error, as pytest reports one (a skip is pytest's to judge)
            unittest = sys.modules.get("unittest")
            if unittest is not None and isinstance(exc, unittest.SkipTest):
                emit({"ev": "fallback", "why": "the import raised unittest.SkipTest"})
                return 3
            error = failure_text(exc, exc.__traceback__, test_path, workdir)
        except BaseException as exc:  # pytest.skip, SystemExit, KeyboardInterrupt at import: pytest decides
            emit({"ev": "fallback", "why": "the import raised %s" % type(exc).__name__})
            return 3
        if items is None:
            emit({"ev": "collect_error", "id": test_file, "msg": error})
            emit({"ev": "collected", "ids": []})
            check(True)
            emit({"ev": "end", "exit": 2})
            self._plain_output("collection error in %s\n%s\n" % (test_file, error))
            return 2
        captured = []  # (test name, stdout, stderr) of failed tests, for the run's output
        if capture is not None:
            capture.suspend_global_capture()
            out, err = capture.read_global_capture()
            if out or err:
                captured.append(("collection", out, err))
        if monitor is not None:
            for finding in monitor.collected(items):
                emit(dict(finding, ev="tamper"))
        emit({"ev": "collected", "ids": [item.nodeid for item in items]})
        mark("t_collected")
        outcomes = []
        started = time.time()
        exit_code = 0
        for item in items:
            nodeid = item.nodeid
            os.environ["PYTEST_CURRENT_TEST"] = "%s (setup)" % nodeid
            check(False, nodeid)
            emit({"ev": "phase", "id": nodeid, "when": "setup", "outcome": "passed"})
            os.environ["PYTEST_CURRENT_TEST"] = "%s (call)" % nodeid
            outcome, message, stop = "passed", None, False
            if capture is not None:
                capture.resume_global_capture()
            try:
                with catch_warnings_for_item(config, hook, "runtest", None):
                    if logging_plugin is not None:
                        with catching_logs(logging_plugin.caplog_handler, level=logging_plugin.log_level) as one, \
                                catching_logs(logging_plugin.report_handler, level=logging_plugin.log_level) as two:
                            one.reset()
                            two.reset()
                            descend(pads[1], pyfunc_call, (item,))
                    else:
                        descend(pads[1], pyfunc_call, (item,))
            except (Exit, KeyboardInterrupt) as exc:  # pytest ends the session: this test has no call report
                stop = True
                exit_code = getattr(exc, "returncode", None) or 2
            except BaseException as exc:
                outcome = outcome_of(exc)
                if outcome == "failed":
                    sys.last_type, sys.last_value, sys.last_traceback = type(exc), exc, exc.__traceback__
                    message = failure_text(exc, exc.__traceback__, test_path, workdir)
            if capture is not None:
                capture.suspend_global_capture()
                out, err = capture.read_global_capture()
                if message is not None and (out or err):
                    captured.append((item.name, out, err))
            if stop:
                break
            check(False, nodeid)
            event = {"ev": "phase", "id": nodeid, "when": "call", "outcome": outcome}
            if message is not None:
                event["msg"] = message
                exit_code = exit_code or 1
            emit(event)
            os.environ["PYTEST_CURRENT_TEST"] = "%s (teardown)" % nodeid
            check(False, nodeid)
            emit({"ev": "phase", "id": nodeid, "when": "teardown", "outcome": "passed"})
            os.environ.pop("PYTEST_CURRENT_TEST", None)
            outcomes.append((item.name, outcome, message))
        mark("t_tested")
        check(True)
        if capture is not None:
            try:
                capture.stop_global_capturing()
            except Exception:
                pass
        if profile is not None:
            emit(_profile_record(profile, plan.seconds))
        if not items:
            exit_code = exit_code or 5
        emit({"ev": "end", "exit": int(exit_code)})
        self._plain_output(summary(outcomes, captured, time.time() - started))
        return int(exit_code)

    @staticmethod
    def _plain_output(text):
        try:
            _write_all(1, text.encode("utf-8", "replace"))
        except OSError:  # the candidate closed its stdout: the report is complete without this text
            pass

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

    def missing_modules(self, needed, files):
        """Modules the test file needs (:func:`needed_modules`) that this interpreter cannot find."""
        import importlib.util

        missing = []
        for name in sorted(needed):
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
        steps = self.calibration()
        try:
            request = next(steps)
            while True:
                result = self.run(request)  # (as deep in the stack as the runs below: see calibration)
                request = steps.send(result)
        except StopIteration:
            pass
        except Exception as exc:  # the plain runner stays off; pytest runs everything
            self.pads = None
            self.calibration_state = "off: %s: %s" % (type(exc).__name__, exc)
        _send(self.proto_out, {"op": "ready", "python": sys.version.split()[0], "pytest": _pytest_version(),
                               "plain_runner": self.calibration_state})
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
            import _pytest.python

            self.worker.pyfunc_call = _pytest.python.pytest_pyfunc_call
            _warm_plain_runner(self.worker, session)
            if self.worker.config.get("monitor", True):
                self.worker.pristine = _PytestSnapshot()
                self.worker.pristine.take_state(session.config.hook)
                _warm_monitor(self.worker, session)
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


_WARM_ROUNDS = 24  # CPython 3.11 quickens a function after 8 calls and specializes an instruction after ~50 runs
_WARM_SOLUTION = "def answer():\n    return 42\n"
_WARM_TESTS = """import pytest
from solution import *


def test_passes():
    assert answer() == 42
    with pytest.raises(ValueError):
        int("x")


def test_fails():
    print("out")
    assert answer() == 41
"""


def _warm_plain_runner(worker, session):
    """Run the plain runner in the server a few dozen times, on a probe file, before it forks.

    A function's first calls are its dearest in CPython 3.11: its bytecode is quickened and its
    inline caches filled (writes to the code object), and first-use caches and lazy imports fill
    (tempfile, warnings, logging). In a forked child every such write copies a page; done here,
    every child inherits them done (measured: -5% CPU per validation). Nothing is left behind:
    capture stopped, the modules imported here dropped, ``sys.path``, ``sys.meta_path`` and the
    environment as they were. A failure here only costs speed.
    """
    capture = session.config.pluginmanager.getplugin("capturemanager")
    workdir = os.path.join(worker.base, "warm")
    test_path = os.path.join(workdir, "test_solution.py")
    devnull = os.open(os.devnull, os.O_WRONLY)
    emit = _make_emitter(devnull, "0" * 32)
    path, meta_path, modules, environ = list(sys.path), list(sys.meta_path), set(sys.modules), dict(os.environ)
    last = {name: getattr(sys, name) for name in ("last_type", "last_value", "last_traceback") if hasattr(sys, name)}
    try:
        for _ in range(_WARM_ROUNDS):
            os.environ.clear()  # as every child sets its environment
            os.environ.update(environ, HOME=workdir)
            plan = _Plan(_WARM_TESTS, test_path)
            codes = _precompile({"solution.py": _WARM_SOLUTION}, "test_solution.py", workdir, plan.needed)
            try:
                worker._plain_session(plan, codes, workdir, "test_solution.py", emit, None, capture, None, (3, 3))
            finally:
                if capture is not None:
                    capture.stop_global_capturing()
                sys.path[:] = path
                sys.meta_path[:] = meta_path
                for name in set(sys.modules) - modules:
                    del sys.modules[name]
                os.environ.clear()
                os.environ.update(environ)
                for name in ("last_type", "last_value", "last_traceback"):
                    if name in last:
                        setattr(sys, name, last[name])
                    elif hasattr(sys, name):
                        delattr(sys, name)
                _PRECOMPILED.update(codes={}, workdir=None)
    except Exception:  # only speed is at stake
        pass
    finally:
        os.close(devnull)


def _warm_monitor(worker, session):
    """The monitor's checks, a few times in the server (see :func:`_warm_plain_runner`)."""
    try:
        workdir = os.path.join(worker.base, "warm")
        module = type(sys)("test_solution")
        item = _PlainItem("test_a", lambda: None, module, "test_solution.py::test_a")
        for round_ in range(_WARM_ROUNDS):
            monitor = _Monitor(workdir, os.path.join(workdir, "test_solution.py"), ["solution.py"])
            monitor.snapshot(session, worker.pristine)
            monitor.sentinel = []
            monitor.imported.append("test_solution")
            monitor._new_modules()
            if round_ == 0:
                monitor.collected([item])
            for _phase in range(3):
                monitor.check(False, item.nodeid)
        monitor.check(True)
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
