"""Warming the fork server before it forks (trusted: the supervisor; no run's code is involved).

A function's first calls are its dearest in CPython 3.11: its bytecode is quickened and its inline
caches filled (writes to the code object), and first-use caches and lazy imports fill. In a forked
child every such write copies a page; done here once, every child inherits them done. Also the
plain runner's recursion calibration (:func:`calibration`), run through the server's own serve loop.
"""

import os
import re
import sys

from gcop_env.sandbox.judge.plain_runner import PRECOMPILED, PlainItem, precompile, plain_session
from gcop_env.sandbox.judge.plan import Plan
from gcop_env.sandbox.judge.reporter import make_emitter


def preload():
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


WARM_ROUNDS = 24  # CPython 3.11 quickens a function after 8 calls and specializes an instruction after ~50 runs
WARM_SOLUTION = "def answer():\n    return 42\n"
WARM_TESTS = """import pytest
from solution import *


def test_passes():
    assert answer() == 42
    with pytest.raises(ValueError):
        int("x")


def test_fails():
    print("out")
    assert answer() == 41
"""


def warm_plain_runner(worker, session):
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
    emit = make_emitter(devnull, "0" * 32)
    path, meta_path, modules, environ = list(sys.path), list(sys.meta_path), set(sys.modules), dict(os.environ)
    last = {name: getattr(sys, name) for name in ("last_type", "last_value", "last_traceback") if hasattr(sys, name)}
    try:
        for _ in range(WARM_ROUNDS):
            os.environ.clear()  # as every child sets its environment
            os.environ.update(environ, HOME=workdir)
            plan = Plan(WARM_TESTS, test_path)
            codes = precompile({"solution.py": WARM_SOLUTION}, "test_solution.py", workdir, plan.needed)
            try:
                plain_session(session, worker.pyfunc_call, plan, codes, workdir, "test_solution.py", emit, None, capture, None, (3, 3))
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
                PRECOMPILED.update(codes={}, workdir=None)
    except Exception:  # only speed is at stake
        pass
    finally:
        os.close(devnull)


def warm_monitor(worker, session):
    """The monitor's checks, a few times in the server (see :func:`warm_plain_runner`)."""
    from gcop_env.sandbox.candidate.monitor import Monitor

    try:
        workdir = os.path.join(worker.base, "warm")
        module = type(sys)("test_solution")
        item = PlainItem("test_a", lambda: None, module, "test_solution.py::test_a")
        for round_ in range(WARM_ROUNDS):
            monitor = Monitor(workdir, os.path.join(workdir, "test_solution.py"), ["solution.py"])
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


def warm_caches():
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



_HEADROOM = '''def _headroom():
    def down(depth):
        try:
            return down(depth + 1)
        except RecursionError:
            return depth
    return down(0)
'''

PROBE_SOURCE = _HEADROOM + '''
_AT_IMPORT = _headroom()

def test_headroom():
    raise AssertionError("gcop-headroom %d %d" % (_AT_IMPORT, _headroom()))
'''


# The same for a solution (trusted isolation: the solution runs in the candidate's process, at the
# depth its calls have in the judge, plus pads measured here).
PROBE_SOLUTION = _HEADROOM + '''
AT_IMPORT = _headroom()

def in_call():
    return _headroom()
'''
PROBE_SOLUTION_TESTS = '''from solution import *

def test_headroom():
    raise AssertionError("gcop-headroom %d %d" % (AT_IMPORT, in_call()))
'''


def calibration(server):
    """The steps that set up the plain runner, once per fork server, before any candidate code.

    A generator of run requests, each sent back its result: :meth:`~gcop_env.sandbox.supervisor.server.ForkServer.serve` runs them from the
    frame it runs every request from, so that the plain runner's stack is measured as it will
    be. A probe test (:data:`PROBE_SOURCE`) runs under pytest and under the plain runner,
    each reporting its recursion headroom at import and in the test's call; ``pads`` (the
    frames the plain runner adds before each) are set to match, and a third run checks that
    they do. When anything differs or fails, ``pads`` stays None: every run goes to pytest.
    """
    server.pads = None
    if server.session is None or not server.config.get("plain_runner", True):
        server.calibration_state = "off: %s" % ("no pytest session" if server.session is None else "turned off")
        return
    request = {"files": {"test_solution.py": PROBE_SOURCE}, "timeout": 30.0}

    def headroom(result, runner):
        tests = result.get("tests") or [{}]
        found = re.search(r"gcop-headroom (\d+) (\d+)", tests[0].get("msg", ""))
        if found is None or result.get("runner") != runner:
            raise ValueError("the %s probe run did not report (%s)" % (
                result.get("runner", runner), result.get("harness_error") or result.get("output", "")[-300:]))
        return int(found.group(1)), int(found.group(2))

    try:
        under_pytest = headroom((yield dict(request, runner="pytest", isolation="in-process")), "pytest")
        server.pads = (0, 0)
        natural = headroom((yield dict(request, runner="auto", isolation="in-process")), "plain")
        pads = (natural[0] - under_pytest[0], natural[1] - under_pytest[1])
        if min(pads) < 0:
            raise ValueError("the plain runner has less recursion headroom than pytest (%s vs %s)" % (natural, under_pytest))
        server.pads = pads
        padded = headroom((yield dict(request, runner="auto", isolation="in-process")), "plain")
        if padded != under_pytest:
            raise ValueError("padding did not match pytest's headroom (%s vs %s)" % (padded, under_pytest))
        server.calibration_state = "on (headroom %d at import, %d in a test; %d and %d frames added)" % (under_pytest + pads)
    except (OSError, ValueError, IndexError) as exc:
        server.pads = None
        server.calibration_state = "off: %s" % (exc,)
    if server.candidate_server is None:
        return
    # Trusted runs: the plain runner in the judge server (inline, and in a child it forks) with
    # pytest's headroom too, then the solution's in the candidate process, as in one process
    # under pytest, at import and in a call, whichever runner the judge uses.
    try:
        if server.pads is not None:
            for inline in (True, False):
                server.judge_pads[inline] = (0, 0)
                fork = {"judge_fork": not inline}
                natural = headroom((yield dict(request, runner="auto", **fork)), "plain")
                server.judge_pads[inline] = (natural[0] - under_pytest[0], natural[1] - under_pytest[1])
                padded = headroom((yield dict(request, runner="auto", **fork)), "plain")
                if padded != under_pytest:
                    raise ValueError("the judge's padding did not match pytest's headroom (%s vs %s)" % (padded, under_pytest))
    except (OSError, ValueError, IndexError) as exc:
        server.judge_pads = {True: None, False: None}
        server.trusted_state = "on (the plain runner off in the judge: %s)" % (exc,)
    request = {"files": {"test_solution.py": PROBE_SOLUTION_TESTS, "solution.py": PROBE_SOLUTION}, "timeout": 30.0}
    try:
        reference = headroom((yield dict(request, runner="pytest", isolation="in-process")), "pytest")
        server.candidate_pads = (0, 0)
        runner = "plain" if server.judge_pads[True] is not None else "pytest"
        natural = headroom((yield dict(request, runner="auto")), runner)
        server.candidate_pads = (natural[0] - reference[0], natural[1] - reference[1])
        found = [headroom((yield dict(request, runner="auto")), runner),
                 headroom((yield dict(request, runner="auto", judge_fork=True)), runner),
                 headroom((yield dict(request, runner="pytest")), "pytest")]
        if any(each != reference for each in found):
            raise ValueError("padding did not match (%s vs %s)" % (found, reference))
        server.trusted_state = "on (the solution's headroom %d at import, %d in a call, as in one process)" % reference
    except (OSError, ValueError, IndexError) as exc:
        server.trusted_state = "on (the solution's recursion headroom differs from one process's: %s)" % (exc,)
