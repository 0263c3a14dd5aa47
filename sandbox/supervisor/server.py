"""The supervisor's fork server (trusted): one run at a time, from request to verdict.

For each request it writes the files into a fresh work dir, forks the run's process, enforces the
wall-clock timeout, kills every process the run left behind, wipes the work dir and answers with
one result message built from the runner's report (:mod:`gcop_env.sandbox.supervisor.report`).
Forking from a process that has pytest imported *and configured*
(:mod:`gcop_env.sandbox.supervisor.session`) makes a validation cost a fork, a collection and the
tests, milliseconds instead of a second. No candidate code runs in this process, and nothing of a
child flows back into it but the report and the output, read as data.
"""

import base64
import marshal
import os
import select
import signal
import socket
import sys
import time
import traceback

from gcop_env.sandbox.candidate.in_process import run_in_process
from gcop_env.sandbox.candidate.server import send_request
from gcop_env.sandbox.judge.server import JudgeServer
from gcop_env.sandbox.judge.server import send_request as send_judge
from gcop_env.sandbox.judge.plan import cached_plan
from gcop_env.sandbox.judge.plain_runner import precompile
from gcop_env.sandbox.judge.reporter import MESSAGE_LIMIT
from gcop_env.sandbox.supervisor.procs import (
    children, descendants, drain, enlarge_pipe, process_table, read_available, remove,
    subtree,
)
from gcop_env.sandbox.supervisor.report import CappedOutput, Report
from gcop_env.sandbox.supervisor.session import RunInThisChild, fork_server_plugin, pytest_version
from gcop_env.sandbox.supervisor.spawn import enter_run
from gcop_env.sandbox.supervisor.warmup import calibration
from gcop_env.sandbox.wire.framing import recv_json, send_json

DRAIN_S = 0.02  # how often the server empties a running child's pipes
JUDGE_RUNS = 500  # runs a judge server serves before a fresh one replaces it
JUDGE_CODES = 64  # compiled test files a judge server keeps (the supervisor says which it may forget)


def _exit_watch(pids):
    """A function that waits (up to its argument, in seconds) until the processes ``pids`` have all
    exited (through pidfds), or None where pidfds are not to be had."""
    opened = []
    for victim in pids:
        try:
            opened.append(os.pidfd_open(victim))
        except ProcessLookupError:
            continue
        except (OSError, AttributeError):
            for fd in opened:
                os.close(fd)
            return None

    def wait(limit):
        deadline = time.monotonic() + limit
        try:
            waiting = list(opened)
            while waiting:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                ready, _, _ = select.select(waiting, [], [], left)
                waiting = [fd for fd in waiting if fd not in ready]
        finally:
            for fd in opened:
                os.close(fd)

    return wait


class ForkServer:
    """One sandbox's fork server (see the module docstring).

    ``limits``: what every run's process gets (:class:`~gcop_env.sandbox.supervisor.spawn.RunLimits`);
    ``candidate_server``: (pid, control socket) of the candidate fork server
    (:mod:`gcop_env.sandbox.candidate.server`), or None when this sandbox has no second user (then
    every run is in-process).
    """

    def __init__(self, config, limits, proto_in, proto_out, candidate_server=None, trusted_state="off"):
        self.config = config
        self.limits = limits
        self.proto_in = proto_in
        self.proto_out = proto_out
        self.in_container = limits.in_container
        self.base = config["base"]
        self.scratch = list(config.get("scratch", []))  # other dirs a run may write, wiped after it
        if self.base not in self.scratch:  # (its users create their work dirs there, and may leave more)
            self.scratch.append(self.base)
        self.kept = {os.path.join(self.base, "judge")}  # not wiped (the judge server's, process backend)
        self.candidate_server = candidate_server
        self.trusted_state = trusted_state  # for the host (hello message)
        self.candidate_pads = (0, 0)  # frames between the judge's depth and the solution's (calibration)
        self.judge = None  # (pid, control socket, start-up error pipe) of the judge server, once started
        self.judge_runs = 0
        self.judge_codes = {}  # plan serials whose code the judge server keeps, least recently used first
        self.judge_pads = {True: None, False: None}  # the plain runner's pads in the judge, inline and forked
        self.judge_dir = config.get("judge_dir") or os.path.join(self.base, "judge")  # the judge server's own
        self.runs = 0
        self.importable = {}  # module name -> found by this interpreter (cached: it does not change)
        # SIGCHLD wakes the select loop through this pipe, so a finished run is noticed at once.
        self.wake = os.pipe()
        for fd in self.wake:
            os.set_blocking(fd, False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self.wake[1])
        self.session = None  # the fork server's pytest session (see serve_in_session), when it has one
        self.pristine = None  # its PytestSnapshot, taken before the first fork (for the monitor)
        self.plans = {}  # (test file text, path) -> Plan, least recently used first
        self.pads = None  # frames the plain runner adds before an import and a call (calibration); None: no plain runner
        self.pyfunc_call = None  # pytest's pytest_pyfunc_call, as it was before any run
        self.calibration_state = "off: no pytest session"  # what calibration() found, for the host (hello message)
        self.default_tempdir = limits.default_tempdir

    # -- one run --------------------------------------------------------------------------

    def pytest_args(self, workdir, test_file):
        inifile = os.path.join(workdir, ".pytest.ini")  # read before any candidate code runs
        return [
            "-q", "--no-header", "--tb=short", "-p", "no:cacheprovider", "--noconftest",
            "-c", inifile, "--rootdir", workdir, "-o", "addopts=", "-o", "python_files=test_*.py",
            "--capture=" + str(self.config.get("capture", "fd")),
            os.path.join(workdir, test_file),
        ]

    def plan(self, source, path, modules=("solution",)):
        """The :class:`Plan` of a test file (cached by its text and path: GRPO validates each
        task's tests once per sampled completion). ``modules``: the run's own module names."""
        return cached_plan(self.plans, source, path, modules)

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
        modules = tuple(sorted(n[:-3] for n in files if n != test_file and n.endswith(".py")))
        plan = self.plan(files.get(test_file, ""), os.path.join(workdir, test_file), modules)
        missing = self.missing_modules(plan.needed, files)
        if missing:  # the tests cannot run here whatever the candidate wrote: an environment defect
            return {"op": "result", "missing_modules": missing}
        # Decided from the test file alone, before anything runs: never a second try at a verdict.
        if self.candidate_server is None:
            why_in_process = "this sandbox has one user (%s)" % self.trusted_state
        elif request.get("isolation", "auto") == "in-process":
            why_in_process = "asked for"
        else:
            why_in_process = plan.why_in_process
        trusted = why_in_process is None
        plain = None
        if request.get("runner", "auto") == "auto" and session is not None and self.pads is not None:
            plain = plan if plan.tests is not None else None
        result = self._run_once(request, files, test_file, session, plan, plain, started, trusted)
        fallback = result.pop("fallback", None)
        if plain is not None and fallback is not None and not (result.get("timed_out") or result.get("tampered")) \
                and "harness_error" not in result:
            # The plain runner stopped before any test ran: pytest runs the request from scratch
            # (in the same isolation).
            result = self._run_once(request, files, test_file, session, plan, None, started, trusted)
            result.pop("fallback", None)
            result["runner"] = "pytest (plain runner: %s)" % fallback
        else:
            result["runner"] = "plain" if plain is not None else "pytest"
        result["isolation"] = "trusted" if trusted else "in-process"
        if not trusted:
            result["isolation_note"] = why_in_process
        return result

    def _run_once(self, request, files, test_file, session, plan, plain, started, trusted):
        """One run: trusted (the judge server and a candidate process) or in-process (a child)."""
        server_cpu = time.process_time()
        workdir = os.path.join(self.base, "run")
        candidate_dir = os.path.join(self.base, "cand")
        profile = bool(request.get("profile"))
        timeout = float(request["timeout"])
        output_limit = int(request.get("output_limit", 1 << 20))
        report = Report(trusted=trusted)
        rep_r, rep_w = os.pipe()
        out_r, out_w = os.pipe()
        enlarge_pipe(rep_r)
        enlarge_pipe(out_r)
        pid = None
        if trusted:
            modules = sorted(n[:-3] for n in files if n != test_file and n.endswith(".py") and n[:-3].isidentifier())
            error = self._start_trusted(request, files, test_file, plan, plain, timeout, modules, rep_w, out_w, profile)
            if error is not None:
                for fd in (rep_r, out_r):
                    os.close(fd)
                return {"op": "result", "harness_error": error, "clean": False}
        else:
            mine = dict(files)
            if plain is None:  # pytest's (empty) ini file, named on its command line
                mine[".pytest.ini"] = "[pytest]\n"
            codes = precompile(files, test_file, workdir, plan.needed) if plain is not None else None
            closing = [rep_r, out_r, self.proto_in, self.proto_out, *self.wake]
            for other in (self.candidate_server, self.judge):  # no run's process may talk to these
                if other is not None:
                    closing.append(other[1].fileno())
            if self.judge is not None:
                closing.append(self.judge[2])
            args = self.pytest_args(workdir, test_file)
            path_fixes = self.limits.path_fixes()
            forked = time.monotonic()
            pid = os.fork()
            if pid == 0:  # the child never returns
                self._child(workdir, args, timeout, rep_w, out_w, closing, test_file, mine, list(files), session,
                            forked if profile else None, path_fixes, plain, codes)
            os.close(rep_w)
            os.close(out_w)

        output = CappedOutput(output_limit)
        sinks = {rep_r: report, out_r: output}
        status = None
        usage = None
        judge_report = None
        timed_out = False
        deadline = started + timeout
        open_fds = [rep_r, out_r]
        for fd in open_fds:
            os.set_blocking(fd, False)
        watch = [self.wake[0]] + ([self.judge[1].fileno()] if trusted else [])
        # Read until the run's process exits, or the judge says the run is done (not until EOF: a
        # background process may hold the pipes). Woken by SIGCHLD or the judge's answer, and every
        # DRAIN_S to empty the (enlarged) pipes: not by each line written, which on a busy CPU
        # would switch to this process and back a dozen times per run. Everything is read before
        # the verdict either way.
        while status is None and judge_report is None:
            wait = deadline - time.monotonic()
            if wait <= 0:
                timed_out = True
                break
            ready, _, _ = select.select(watch, [], [], min(wait, DRAIN_S))
            if self.wake[0] in ready:  # SIGCHLD arrived
                while drain(self.wake[0]):
                    pass
            for fd in list(open_fds):
                if not read_available(fd, sinks[fd]):
                    open_fds.remove(fd)
            if trusted:
                if len(ready) > 1 or watch[-1] in ready:
                    judge_report = self._judge_answer()
                elif os.waitpid(self.judge[0], os.WNOHANG)[0]:
                    judge_report = {"status": None, "died": True}  # the judge server died
            else:
                done, code, usage = os.wait4(pid, os.WNOHANG)
                if done:
                    status = code
        exited = time.monotonic()
        if trusted and (judge_report is None or judge_report.get("died") or judge_report.get("status") is None):
            self._stop_judge()  # it timed out, died or broke the protocol: a fresh one serves the next run
        if trusted and judge_report is not None:
            status = judge_report.get("status")
        strays = self._kill_everything(pid)
        if pid is not None and status is None:
            for _ in range(200):
                done, code, usage = os.wait4(pid, os.WNOHANG)
                if done:
                    status = code
                    break
                time.sleep(0.005)
        # Everything that could write is dead now: drain what is left in the pipes.
        for fd in (rep_r, out_r):
            if fd in open_fds:
                read_available(fd, sinks[fd])
            os.close(fd)
        report.finish()
        clean = self._wipe(workdir) & (self._wipe(candidate_dir, scratch=False) if trusted else True)
        result = report.result(plan.expected)
        exit_code = signal_name = None
        if status is not None:
            if os.WIFEXITED(status):
                exit_code = os.WEXITSTATUS(status)
            elif os.WIFSIGNALED(status):
                try:
                    signal_name = signal.Signals(os.WTERMSIG(status)).name
                except ValueError:
                    signal_name = str(os.WTERMSIG(status))
        if report.harness is not None:  # (a trusted runner's record: the candidate never ran)
            return {"op": "result", "harness_error": report.harness}
        if report.prefix is None and not timed_out:
            # The runner writes its nonce before any candidate code runs: it died in the harness.
            text = output.data.decode("utf-8", "replace").strip()
            return {"op": "result", "harness_error": "the run's process ended before any candidate code ran (exit %s, signal %s)%s" % (
                exit_code, signal_name, (": " + text[-MESSAGE_LIMIT:]) if text else "")}
        if profile and result.get("profile") is not None:
            result["profile"]["cleanup"] = time.monotonic() - exited
            if usage is not None:  # the child's own CPU, and its page faults (mostly copy-on-write)
                result["profile"].update(cpu_user=usage.ru_utime, cpu_system=usage.ru_stime, page_faults=float(usage.ru_minflt))
            elif judge_report is not None and judge_report.get("usage"):  # the judge's, for this run
                user, system, faults = judge_report["usage"]
                result["profile"].update(cpu_user=user, cpu_system=system, page_faults=faults)
            result["profile"]["server_cpu"] = time.process_time() - server_cpu
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

    # -- trusted runs: the judge server and the candidate server ---------------------------------

    def _start_trusted(self, request, files, test_file, plan, plain, timeout, modules, rep_w, out_w, profile):
        """Hand a trusted run to the candidate server and the judge server (None, or why it could not be)."""
        judge_end, candidate_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            theirs = {n: t for n, t in files.items() if n != test_file}
            send_request(self.candidate_server[1], {
                "workdir": os.path.join(self.base, "cand"), "files": theirs, "timeout": timeout, "modules": modules,
                "pads": list(self.candidate_pads), "profile": profile}, [candidate_end.fileno()])
        except OSError as exc:
            self.candidate_server = None  # this sandbox is broken: the host replaces it
            return "the candidate server is gone, before any candidate code ran (%s)" % exc
        finally:
            candidate_end.close()
        try:
            if self.judge is None:
                raise OSError("no judge server")
            self.judge_runs += 1
            inline = plain is not None and plan.inline_ok and not request.get("judge_fork")
            code = code_id = None
            forget = []
            if plain is not None:  # (compiled here once: the judge does not parse the file again, and keeps it)
                code_id = plan.serial
                if self.judge_codes.pop(code_id, False) is None:
                    self.judge_codes[code_id] = None
                else:
                    code = base64.b64encode(marshal.dumps(plan.code_at(os.path.join(self.judge_dir, test_file)))).decode("ascii")
                    self.judge_codes[code_id] = None
                    while len(self.judge_codes) > JUDGE_CODES:
                        oldest = next(iter(self.judge_codes))
                        del self.judge_codes[oldest]
                        forget.append(oldest)
            send_judge(self.judge[1], {
                "text": files[test_file], "test_file": test_file, "modules": modules, "inline": inline,
                "code": code, "code_id": code_id, "forget": forget, "tests": plan.tests, "bound": sorted(plan.bound_names), "plan_seconds": plan.seconds,
                "runner": "plain" if plain is not None else "pytest", "pads": list(self.judge_pads[inline]) if (
                    plain is not None and self.judge_pads[inline] is not None) else None, "profile": profile,
                "data": {n: t for n, t in files.items() if n != test_file and not n.endswith(".py")},
            }, [rep_w, out_w, judge_end.fileno()])
        except OSError as exc:
            why = self._judge_start_error()
            self._stop_judge()
            return "the judge server did not take the run, before any candidate code ran (%s)%s" % (exc, why)
        finally:
            judge_end.close()
            os.close(rep_w)
            os.close(out_w)
        return None

    def _judge_answer(self):
        try:
            answer = recv_json(self.judge[1].fileno())
        except (OSError, ValueError):
            answer = None
        return answer if isinstance(answer, dict) else {"status": None, "died": True}

    def _ensure_judge(self):
        """A judge server for the next trusted run: a fresh one when there is none (the last one
        timed out or died) or the last one has served its share. Called from :meth:`serve`'s loop
        only: a run of pytest's in a child the judge forks goes back up this process's stack into
        the session's collection, and must meet no clean-up of a run on its way."""
        if self.candidate_server is not None and (self.judge is None or self.judge_runs >= JUDGE_RUNS):
            self._stop_judge()
            self._start_judge()

    def _start_judge(self):
        """Fork the judge server (see gcop_env.sandbox.judge.server): from here, with this warm session."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        closing = [mine.fileno(), self.proto_in, self.proto_out, *self.wake]
        if self.candidate_server is not None:
            closing.append(self.candidate_server[1].fileno())
        workdir = self.judge_dir
        if not self.in_container:  # (a container mounts it, the judge's own)
            remove(workdir)
            os.mkdir(workdir, 0o700)
            os.chown(workdir, *self.limits.judge_user)
        path_fixes = self.limits.path_fixes()
        errors, devnull = os.pipe()  # (its output: only what a failed start-up says)
        os.set_blocking(errors, False)
        closing.append(errors)
        pid = os.fork()
        if pid == 0:
            mine.detach()  # (its descriptor is closed below by number: the object must not close a later one)
            try:
                enter_run(self.limits, workdir, None, devnull, closing, self.limits.judge_user, path_fixes,
                          self.session, None, oom_score=None)
                JudgeServer(self, theirs, workdir).serve()
            except RunInThisChild:
                raise  # (a forked run of pytest's, going back up into the session's collection)
            except BaseException:
                try:
                    os.write(2, traceback.format_exc().encode("utf-8", "replace"))
                finally:
                    os._exit(70)
            os._exit(0)
        os.close(devnull)
        theirs.close()
        self.judge = (pid, mine, errors)
        self.judge_runs = 0
        self.judge_codes = {}  # plan serials whose code the judge server keeps, least recently used first

    def _judge_start_error(self):
        try:
            text = os.read(self.judge[2], 8192).decode("utf-8", "replace").strip() if self.judge else ""
        except OSError:
            text = ""
        return (": " + text[-MESSAGE_LIMIT:]) if text else ""

    def _stop_judge(self):
        if self.judge is None:
            return
        pid, control, errors = self.judge
        self.judge = None
        os.close(errors)
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        control.close()
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass

    def _child(self, workdir, args, timeout, rep_w, out_w, close_fds, test_file, mine, names, session, forked, path_fixes,
               plain, codes):
        try:
            profile, capture = enter_run(self.limits, workdir, timeout, out_w, close_fds, self.limits.candidate_user,
                                         path_fixes, session, forked, files=mine, confine=True)
            run_in_process(self, workdir, args, rep_w, test_file, names, session, profile, capture, plain, codes, forked)
        except RunInThisChild:
            raise
        except BaseException:
            try:
                os.write(2, traceback.format_exc().encode("utf-8", "replace"))
            finally:
                os._exit(70)

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
        """SIGKILL every process the run started; return how many outlived the run's own processes
        (the judge or in-process child ``pid``, and the candidate process of a trusted run)."""
        spared = {server[0] for server in (self.candidate_server, self.judge) if server is not None}
        strays = set()
        for attempt in range(100):
            if self.in_container:
                # We are PID 1 of the container's PID namespace: every other process in it is the
                # candidate server or the run's, however it detached itself (setsid, double fork).
                table = process_table()  # (one scan: who is whose child is read at the same moment)
                victims = [p for p in table if p != 1 and p not in spared]
            else:
                # Process backend: we are a child subreaper, so orphans of the run are
                # reparented to us and stay findable as our descendants.
                table = subtree(os.getpid())
                if table is None:  # (no children files: every process of the host, once)
                    table = process_table()
                    table = {p: table[p] for p in descendants(os.getpid(), table)}
                victims = [p for p in table if p not in spared]
            own = {pid} | {p for p, parent in table.items() if parent in spared}
            exits = _exit_watch(victims) if victims and len(victims) <= 16 else None
            # Stopped first, then killed: a stopped process cannot fork, so a fork bomb stops
            # growing while it is taken down one process at a time.
            for sig in (signal.SIGSTOP, signal.SIGKILL) if len(victims) > 1 else (signal.SIGKILL,):
                for victim in victims:
                    try:
                        os.kill(victim, sig)
                    except (ProcessLookupError, PermissionError):
                        pass
            strays.update(v for v in victims if v not in own)
            if exits is not None:  # (woken by their exits, not by a clock)
                exits(0.01 * min(attempt + 1, 10))
            self._reap(pid)
            if not victims:
                break
            if exits is None:
                time.sleep(0.002 * min(attempt + 1, 10))
        return len(strays)

    def _reap(self, keep):
        """Reap zombies except the pytest child (its status is read by :meth:`run`)."""
        for child in children(os.getpid()):
            if child == keep:
                continue
            try:
                os.waitpid(child, os.WNOHANG)
            except ChildProcessError:
                pass

    def _wipe(self, workdir, scratch=True):
        ok = remove(workdir)
        for scratch in self.scratch if scratch else ():
            try:
                entries = os.listdir(scratch)
            except OSError:
                continue
            for entry in entries:
                path = os.path.join(scratch, entry)
                if path not in self.kept:
                    ok &= remove(path)
        return ok

    # -- the serve loop -----------------------------------------------------------------------

    def serve_in_session(self):
        """Serve from inside a pytest session, so that every run forks at the start of collection.

        ``pytest.main`` runs here once, on the fixed work dir's test file: it parses the command
        line, loads and configures the plugins and starts the session (about half of what a
        whole ``pytest.main`` costs per run), then calls ``pytest_collection``, where
        :class:`_ForkServerPlugin` serves requests. Each run's child leaves the serve loop
        (:class:`RunInThisChild`) and returns from that hook, so pytest goes on to collect and
        run the run's files, and the child exits with pytest's code. No candidate code ever runs
        before the fork, and nothing of a child flows back. Returns False when pytest could not
        start a session (then :meth:`serve` serves plain ``pytest.main`` runs).
        """
        import pytest

        workdir = os.path.join(self.base, "run")
        plugin = fork_server_plugin(self)
        try:
            os.mkdir(workdir, 0o700)
            with open(os.path.join(workdir, ".pytest.ini"), "w") as handle:
                handle.write("[pytest]\n")
            code = pytest.main(self.pytest_args(workdir, "test_solution.py"), plugins=[plugin])
        except RunInThisChild:
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
        remove(workdir)
        return plugin.served


    def serve(self):
        steps = calibration(self)
        try:
            self._ensure_judge()
            request = next(steps)
            while True:
                result = self.run(request)  # (as deep in the stack as the runs below: see calibration)
                self._ensure_judge()
                request = steps.send(result)
        except StopIteration:
            pass
        except Exception as exc:  # the plain runner stays off; pytest runs everything
            self.pads = None
            self.calibration_state = "off: %s: %s" % (type(exc).__name__, exc)
        send_json(self.proto_out, {"op": "ready", "python": sys.version.split()[0], "pytest": pytest_version(),
                                   "plain_runner": self.calibration_state, "isolation": self.trusted_state,
                                   "filesystem": self.limits.filesystem})
        while True:
            self._ensure_judge()
            try:
                request = recv_json(self.proto_in)
            except (OSError, ValueError):
                return
            if request is None or request.get("op") == "exit":
                return
            if request.get("op") == "ping":
                send_json(self.proto_out, {"op": "pong"})
                continue
            try:
                result = self.run(request)
            except Exception:
                result = {"op": "result", "harness_error": traceback.format_exc()[-MESSAGE_LIMIT:]}
            send_json(self.proto_out, result)
