"""Reading a runner's records into a verdict (trusted: the supervisor, never the run's processes).

The runner (the judge, or the in-process child) writes one record per line to a pipe only it and
the supervisor hold, after a first line with the run's random nonce; anything else in the stream
(a line without the nonce, a malformed record, results for tests never collected) marks the
report as tampered. :class:`Report` keeps what the records say; :meth:`Report.result` applies the
pass rule's inputs (every test's outcome from its setup, call and teardown phases).
"""

import json

REPORT_LIMIT = 8 << 20  # bytes of report a run may produce before it counts as tampering


def base_name(nodeid):
    """``test_solution.py::TestX::test_y[3]`` -> ``TestX::test_y``."""
    name = nodeid.split("::", 1)[1] if "::" in nodeid else nodeid
    return name.split("[", 1)[0]


class CappedOutput:
    """The run's stdout/stderr, kept up to ``limit`` bytes; the rest is counted, not stored."""

    def __init__(self, limit):
        self.limit = limit
        self.data = bytearray()
        self.dropped = 0

    def feed(self, chunk):
        keep = max(0, self.limit - len(self.data))
        self.data += chunk[:keep]
        self.dropped += len(chunk) - min(len(chunk), keep)


class Report:
    """Reads the plugin's lines and decides the verdict."""

    def __init__(self, trusted=False):
        self.trusted = trusted  # the runner is the judge (no candidate code in its process)
        self.harness = None  # a trusted runner's word that the harness failed before the candidate ran
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
        if self.size > REPORT_LIMIT:
            self._tamper("report larger than %d bytes" % REPORT_LIMIT)
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
                self.profile = dict(self.profile or {}, **{k: float(v) for k, v in event.items() if k != "ev"})
            elif kind == "fallback":
                if self.collected is not None or self.phases or self.end is not None:
                    raise ValueError("a fallback after collection")
                self.fallback = str(event["why"])
            elif kind == "harness" and self.trusted:
                self.harness = str(event["why"])
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
            seen = {base_name(i) for i in collected}
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
