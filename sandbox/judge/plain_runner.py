"""The plain runner: pytest's verdicts for plain test files, without pytest's collection machinery.

Most test files (all but a handful of KodCode's and HumanEval's) are a few module-level
``def test_x():`` functions with plain asserts: no fixtures, marks, classes or hooks. For those
the run does not need pytest's collection and runtest machinery, which costs more than the
tests: this runner imports the test file and calls its test functions itself, and reports the
same records (collected, setup/call/teardown phases, end) to the same parser, so the verdict and
the pass rule do not change. What decides a test's outcome is pytest's own code where it matters:
pytest's output capture (fd), warning filters, logging handlers and ``pytest_pyfunc_call``;
pytest's rules for turning an exception into passed/failed/skipped, and for an interrupted
session. A test function runs with the recursion headroom it has under pytest (measured once per
fork server: :func:`gcop_env.sandbox.supervisor.warmup.calibration`).

Eligibility is decided twice. Before the fork, from the file's syntax
(:func:`gcop_env.sandbox.judge.plan.plain_tests`); after the import, from the module's namespace
by pytest's collection rules (anything pytest would collect differently: a class, a fixture, a
marked or generator test, a setup hook). When the second check fails, or the import raises, the
runner reports ``fallback`` before any test has run and the supervisor runs the request again,
from scratch, under pytest: the verdict of such a run is pytest's alone.

Runs in the judge (trusted isolation, where the solution is a proxy) and in the in-process
fallback's child (with the runtime monitor, in the candidate's reach).
"""

import os
import sys
import time
import traceback
from importlib.machinery import PathFinder, SourceFileLoader

from gcop_env.sandbox.judge.plan import ASSERT_HELPER, reserved
from gcop_env.sandbox.judge.reporter import MESSAGE_LIMIT, profile_record
from gcop_env.sandbox.wire.framing import write_all

_FUNCTION = type(lambda: 0)
_CO_NOT_PLAIN = 0x20 | 0x80 | 0x100 | 0x200  # generator, coroutine, iterable coroutine, async generator


def assert_message(message, op, left, right):
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


def make_descend():
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


class PrecompiledFinder:
    """Finds the run's own modules that the test file imports (``solution``) with the code the
    server compiled from the same bytes before the fork (compiling in the child costs it a
    hundred copied pages). The spec, loader class (a ``SourceFileLoader``), file name and frames
    are those of a normal import; only while the work dir is still first on ``sys.path``
    (where ``PathFinder``, after which it sits, would find the same file), and only for the
    first import of each (a reload reads the file)."""

    @staticmethod
    def find_spec(fullname, path=None, target=None):
        entry = PRECOMPILED["codes"].get(fullname) if path is None else None
        if entry is None or not sys.path or sys.path[0] != PRECOMPILED["workdir"]:
            return None
        import importlib.util

        return importlib.util.spec_from_file_location(fullname, entry[0], loader=PrecompiledLoader(fullname, entry[0]))


# Filled in place in a run's child (rebinding would change the module's dict, which the monitor watches).
PRECOMPILED = {"codes": {}, "workdir": None}  # module name -> (path, code object); the work dir


class PrecompiledLoader(SourceFileLoader):
    def get_code(self, fullname):
        entry = PRECOMPILED["codes"].pop(fullname, None)
        if entry is not None and entry[0] == self.path:
            return entry[1]
        return super().get_code(fullname)


def precompile(files, test_file, workdir, needed):
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


class PlainItem:
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


class Fallback(Exception):
    """The plain runner cannot run this file like pytest would (raised before any test runs)."""


def collect_plain(module, plan, test_path, nodeid_prefix):
    """The module's tests by pytest's collection rules, when all of them are plain functions;
    raises :class:`Fallback` where pytest would collect anything else."""
    from _pytest.fixtures import getfixturemarker

    unittest = sys.modules.get("unittest")
    items = []
    for name, value in list(vars(module).items()):
        if name == ASSERT_HELPER or name in ("__builtins__", "__file__", "__cached__"):
            continue
        if reserved(name) and not isinstance(value, type(sys)):  # (``import pytest`` binds a module)
            raise Fallback("the module defines %s" % name)
        if isinstance(value, type):
            if name.startswith("Test") or (unittest is not None and issubclass(value, unittest.TestCase)):
                raise Fallback("a test class %s" % name)
            continue
        try:
            fixture = getfixturemarker(value)
            nose = getattr(value, "__test__", False) is True
        except Exception:
            raise Fallback("an object pytest cannot inspect (%s)" % name)
        if fixture is not None:
            raise Fallback("a fixture %s" % name)
        if not (name.startswith("test") or nose) or not callable(value):
            continue
        code = getattr(value, "__code__", None) if type(value) is _FUNCTION else None
        if (
            code is None or code.co_filename != test_path or code.co_argcount or code.co_kwonlyargcount
            or code.co_posonlyargcount or code.co_flags & (0x04 | 0x08 | _CO_NOT_PLAIN) or vars(value)
        ):
            raise Fallback("%s is not a plain test function" % name)
        items.append(PlainItem(name, value, module, nodeid_prefix + name))
    if [item.name for item in items] != plan.tests:
        raise Fallback("the module's tests differ from the file's")
    return items


def outcome_of(exc):
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


def failure_text(exc, tb, test_path, workdir):
    """A short traceback like pytest's ``--tb=short``: from the test function's frame on, then
    ``E   Type: message``."""
    lines = []
    started = False
    for frame in traceback.StackSummary.extract(traceback.walk_tb(tb)):  # (no column positions: not shown)
        if not started and frame.filename != test_path:
            continue
        if frame.filename.startswith(("<frozen importlib", "/gcop-sandbox/")):  # the import machinery, the harness
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
    return "\n".join(lines)[:MESSAGE_LIMIT]


def plain_summary(outcomes, captured, seconds):
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
                lines.append(text.rstrip("\n")[:MESSAGE_LIMIT])
    counts = {}
    for _, outcome, _ in outcomes:
        counts[outcome] = counts.get(outcome, 0) + 1
    summary = ", ".join("%d %s" % (counts[k], k) for k in ("failed", "passed", "skipped") if counts.get(k))
    lines.append("%s in %.2fs" % (summary or "no tests ran", seconds))
    return "\n".join(lines) + "\n"



def plain_session(session, pyfunc_call, plan, codes, workdir, test_file, emit, monitor, capture, profile, pads,
                  pristine=None, guard=None, before_end=None):
    """Import the test file and run its tests; returns the exit code pytest would have.

    Emits what :func:`gcop_env.sandbox.judge.reporter.make_reporter` would have for the same
    file, or ``fallback`` when pytest must run it instead (before any test has run). ``session``:
    the fork server's pytest session; ``pyfunc_call``: pytest's ``pytest_pyfunc_call`` as it was
    before any run; ``pads``: frames added before the import and each call (the calibration);
    ``pristine``: the monitor's snapshot from the server; ``guard``: under trusted isolation, the
    channel to the candidate (a test in which the candidate failed fails, see
    :meth:`gcop_env.sandbox.judge.remote.Channel.failure_since`). The server runs it too, on a probe file,
    before it forks (:func:`gcop_env.sandbox.supervisor.warmup.warm_plain_runner`).
    """
    from _pytest.logging import catching_logs
    from _pytest.outcomes import Exit
    from _pytest.warnings import catch_warnings_for_item

    # Everything the runner calls is bound here, before any candidate code runs: rebinding the
    # module's globals later changes nothing it does (and the monitor reports it).
    descend, collect, outcome_for, failure_for, summary = (
        make_descend(), collect_plain, outcome_of, failure_text, plain_summary)
    config = session.config
    hook = config.hook
    logging_plugin = config.pluginmanager.get_plugin("logging-plugin")
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
        PRECOMPILED.update(codes=codes, workdir=workdir)
        sys.meta_path.insert(sys.meta_path.index(PathFinder) if PathFinder in sys.meta_path else len(sys.meta_path),
                             PrecompiledFinder)
    if monitor is not None:
        monitor.snapshot(session, pristine)
    mark("t_sessionstart")
    import types

    module = types.ModuleType(module_name)
    module.__file__ = test_path
    module.__dict__[ASSERT_HELPER] = assert_message
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
    except Fallback as exc:  # pytest would collect something else: pytest decides
        emit({"ev": "fallback", "why": str(exc.args[0])[:200]})
        return 3
    except Exception as exc:  # a collection error, as pytest reports one (a skip is pytest's to judge)
        unittest = sys.modules.get("unittest")
        if unittest is not None and isinstance(exc, unittest.SkipTest):
            emit({"ev": "fallback", "why": "the import raised unittest.SkipTest"})
            return 3
        error = failure_for(exc, exc.__traceback__, test_path, workdir)
    except BaseException as exc:  # pytest.skip, SystemExit, KeyboardInterrupt at import: pytest decides
        emit({"ev": "fallback", "why": "the import raised %s" % type(exc).__name__})
        return 3
    if items is None:
        emit({"ev": "collect_error", "id": test_file, "msg": error})
        emit({"ev": "collected", "ids": []})
        check(True)
        emit({"ev": "end", "exit": 2})
        plain_output("collection error in %s\n%s\n" % (test_file, error))
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
        failures_before = len(guard.failures) if guard is not None else 0
        if capture is not None:
            capture.resume_global_capture()
        try:
            if guard is not None:
                # Trusted isolation: the tests cannot use warnings or logging (the plan sends such
                # files in-process), and the solution's warnings and log records are its process's.
                descend(pads[1], pyfunc_call, (item,))
            else:
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
            outcome = outcome_for(exc)
            if outcome == "failed":
                sys.last_type, sys.last_value, sys.last_traceback = type(exc), exc, exc.__traceback__
                message = failure_for(exc, exc.__traceback__, test_path, workdir)
        if guard is not None and outcome != "failed" and not stop:
            failure = guard.failure_since(failures_before)
            if failure is not None:  # the test caught it, or the candidate swallowed the tests' assertion
                outcome, message = "failed", "E   " + failure
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
        emit(profile_record(profile, plan.seconds))
        if before_end is not None:
            before_end()
    if guard is not None:  # the candidate's process is not needed any more: it exits while the run ends
        guard.close()
    if not items:
        exit_code = exit_code or 5
    emit({"ev": "end", "exit": int(exit_code)})
    plain_output(summary(outcomes, captured, time.time() - started))
    return int(exit_code)


def plain_output(text):
    try:
        write_all(1, text.encode("utf-8", "replace"))
    except OSError:  # the candidate closed its stdout: the report is complete without this text
        pass
