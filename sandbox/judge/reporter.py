"""The runner's report: records of collection, each test phase and the end, on a private pipe.

Runs in the process that runs the tests: the judge (trusted isolation), or the in-process child
(where the candidate shares the process and the runtime monitor's findings go out as ``tamper``
records). The supervisor reads the records (:mod:`gcop_env.sandbox.supervisor.report`).
"""

import json
import sys
import os
import time

from gcop_env.sandbox.wire.framing import write_all

MESSAGE_LIMIT = 4000  # characters kept per failure message


def make_emitter(fd, nonce):
    """``emit(event)``: one report record to ``fd``; the nonce lives only in this closure."""
    prefix = (nonce + " ").encode("ascii")

    def emit(event):
        try:
            write_all(fd, prefix + json.dumps(event).encode("utf-8") + b"\n")
        except OSError:
            pass

    return emit


def make_reporter(emit, monitor=None, guard=None, test_file=None):
    """A pytest plugin that reports through ``emit`` (:func:`make_emitter`).

    ``monitor`` (a :class:`~gcop_env.sandbox.candidate.monitor.Monitor`, in-process runs) is asked
    for findings at collection's end, after every test phase and at the session's end; each
    finding goes out as a ``tamper`` record before the record that follows it, so a forged result
    never reaches the report unflagged. ``guard`` (trusted runs: the channel to the candidate)
    fails a test phase in which the candidate failed, whatever the test made of it. ``test_file``:
    the name the report's test ids start with, when pytest ran the file from another directory
    than its root (the judge server's own).
    """
    import pytest

    def ident(nodeid):
        if test_file is None:
            return nodeid
        return test_file + "::" + nodeid.split("::", 1)[1] if "::" in nodeid else test_file

    def text(report):
        try:
            return str(report.longreprtext)[:MESSAGE_LIMIT]
        except Exception:  # a candidate's exception with a broken __repr__
            return "<unprintable failure>"

    def flush(findings):
        for finding in findings:
            emit(dict(finding, ev="tamper"))

    class _Reporter:
        profile = None  # phase timings, when the host asked for them (informational only)

        def __init__(self):
            self.marks = {}  # nodeid -> len(guard.failures) when its last phase ended

        def mark(self, phase):
            if self.profile is not None:
                self.profile[phase] = time.monotonic()

        def pytest_sessionstart(self, session):
            self.mark("t_sessionstart")
            if monitor is not None:
                monitor.snapshot(session)

        def pytest_collectreport(self, report):
            if report.failed:
                emit({"ev": "collect_error", "id": ident(report.nodeid), "msg": text(report)})

        def pytest_collection_finish(self, session):
            self.mark("t_collected")
            if monitor is not None:
                flush(monitor.collected(session.items))
            emit({"ev": "collected", "ids": [ident(item.nodeid) for item in session.items]})

        def pytest_runtest_logstart(self, nodeid, location):
            if guard is not None:
                self.marks[nodeid] = len(guard.failures)

        def pytest_runtest_logreport(self, report):
            if monitor is not None:
                flush(monitor.check(full=False, nodeid=report.nodeid))
            event = {"ev": "phase", "id": ident(report.nodeid), "when": report.when, "outcome": report.outcome}
            if report.failed:
                event["msg"] = text(report)
            if guard is not None:
                failure = guard.failure_since(self.marks.get(report.nodeid, 0))
                self.marks[report.nodeid] = len(guard.failures)
                if failure is not None and not report.failed:
                    event.update(outcome="failed", msg="E   " + failure)
            emit(event)

        def pytest_sessionfinish(self, session, exitstatus):
            self.mark("t_tested")
            if monitor is not None:
                flush(monitor.check(full=True))
            if self.profile is not None:
                p = self.profile
                emit(profile_record(p, p.get("rewrite", 0.0)))
            emit({"ev": "end", "exit": int(exitstatus)})
            self.exitstatus = int(exitstatus)

        def pytest_internalerror(self, excrepr, excinfo):
            try:  # (pytest's own report of it may sit in a capture that is never printed)
                os.write(2, ("INTERNALERROR " + str(excrepr)[-MESSAGE_LIMIT:] + "\n").encode("utf-8", "replace"))
            except Exception:
                pass

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


def profile_record(marks, rewrite):
    """The ``profile`` record of a run (seconds per phase) from its child's time marks; ``rewrite``:
    the assertion rewriting's share (pytest's in the child, or the plain runner's plan in the server)."""
    record = {"ev": "profile", "fork": marks["fork"], "setup": marks["setup"], "rewrite": rewrite,
              "config": marks["t_sessionstart"] - marks["t_main"], "collect": marks["t_collected"] - marks["t_sessionstart"],
              "tests": marks["t_tested"] - marks["t_collected"], "monitor": time.monotonic() - marks["t_tested"]}
    candidate = marks.get("candidate")  # (trusted runs: the candidate process's CPU and page faults by then)
    if isinstance(candidate, dict):
        try:
            record.update(candidate_start_cpu=candidate["start"][0], candidate_start_faults=candidate["start"][1],
                          candidate_setup_cpu=candidate["setup"][0] - candidate["start"][0],
                          candidate_import_cpu=candidate["import"][0] - candidate["setup"][0],
                          candidate_page_faults=candidate["import"][1])
        except (KeyError, IndexError, TypeError):
            pass
    return record
