"""The fork server's pytest session (trusted: the supervisor, before any run's code).

The supervisor runs ``pytest.main`` once, on a fixed work dir: it parses the command line, loads
and configures the plugins and starts the session (about half of what a whole ``pytest.main``
costs per run), then serves runs from inside the session's ``pytest_collection`` hook
(:func:`fork_server_plugin`). A run that pytest must collect (not the plain runner's) leaves the
serve loop in its forked child (:class:`RunInThisChild`) and returns from that hook, so pytest
goes on to collect and run the run's files, and the child exits with pytest's code.
"""

import gc
import os
import time

from gcop_env.sandbox.supervisor.procs import remove


def make_reporter_slot():
    import pytest

    class _ReporterSlot:
        """The fork server's stand-in for a run's reporter plugin (see :func:`gcop_env.sandbox.judge.reporter.make_reporter`):
        registered with its session once, it forwards every hook to ``reporter``, which only a
        run's child sets (before any candidate code runs)."""

        reporter = None

        def pytest_collectreport(self, report):
            if self.reporter is not None:
                self.reporter.pytest_collectreport(report)

        def pytest_runtest_logstart(self, nodeid, location):
            if self.reporter is not None:
                self.reporter.pytest_runtest_logstart(nodeid, location)

        def pytest_collection_finish(self, session):
            if self.reporter is not None:
                self.reporter.pytest_collection_finish(session)

        def pytest_runtest_logreport(self, report):
            if self.reporter is not None:
                self.reporter.pytest_runtest_logreport(report)

        def pytest_sessionfinish(self, session, exitstatus):
            if self.reporter is not None:
                self.reporter.pytest_sessionfinish(session, exitstatus)

        def pytest_internalerror(self, excrepr, excinfo):
            if self.reporter is not None:
                self.reporter.pytest_internalerror(excrepr, excinfo)

        @pytest.hookimpl(tryfirst=True)
        def pytest_unconfigure(self, config):
            if self.reporter is not None:
                self.reporter.pytest_unconfigure(config)

    return _ReporterSlot()


class RunInThisChild(BaseException):
    """Raised in a run's child to unwind from the serve loop back into the pytest session."""

    def __init__(self, reporter, monitor, capture):
        super().__init__()
        self.reporter, self.monitor, self.capture = reporter, monitor, capture


def fork_server_plugin(worker):
    """The plugin that serves requests from pytest's collection hook (see :meth:`~gcop_env.sandbox.supervisor.server.ForkServer.serve_in_session`)."""
    import pytest

    class _ForkServerPlugin:
        """Serves requests from pytest's collection hook (see :meth:`~gcop_env.sandbox.supervisor.server.ForkServer.serve_in_session`)."""

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
            remove(os.path.join(self.worker.base, "run"))  # each run makes it anew
            self.worker.session = session
            # The session captured output into files of this process's: every run starts its own.
            capture = session.config.pluginmanager.getplugin("capturemanager")
            if capture is not None:
                capture.stop_global_capturing()
            # Registered here once (registering a plugin costs about a millisecond); in a child
            # it forwards to that run's reporter, made there after the fork.
            slot = make_reporter_slot()
            session.config.pluginmanager.register(slot, "gcop-reporter")
            from gcop_env.sandbox.candidate.monitor import PytestSnapshot
            from gcop_env.sandbox.supervisor.warmup import warm_caches, warm_monitor, warm_plain_runner

            warm_caches()
            import _pytest.python

            self.worker.pyfunc_call = _pytest.python.pytest_pyfunc_call
            warm_plain_runner(self.worker, session)
            if self.worker.config.get("monitor", True):
                self.worker.pristine = PytestSnapshot()
                self.worker.pristine.take_state(session.config.hook)
                warm_monitor(self.worker, session)
            # Everything alive now lives as long as the server: keep the children's garbage
            # collector off it (less work per collection, fewer copy-on-write page faults).
            gc.freeze()
            try:
                self.worker.serve()
            except RunInThisChild as run:
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



def profile_rewriting(profile):
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


def pytest_version():
    import pytest

    return pytest.__version__
