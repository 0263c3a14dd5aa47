"""Trusted isolation's process boundary, attacked from the candidate's side, in both backends.

The candidate's process runs as another user than the judge's (the tests') and the sandbox's own
processes: it cannot read their memory or ``/proc`` entries, signal them, trace them, find the test
file, or reach any descriptor but its own channel, and it holds no capability. Each test below is
a solution that tries, and either reports what it could reach (a probe, whose findings the test
file asserts empty) or, when it finds the tests' secret, answers with it (an attack, which must
fail). A known-good run follows on the same sandbox, which must stay usable.
"""

from __future__ import annotations

import secrets
import textwrap

import pytest

from _sandbox_support import GOOD, TESTS, backend_fixture

JUDGE_UID, CANDIDATE_UID = 65533, 65534


box = backend_fixture()


def _run(box, solution, tests, timeout=20.0):
    outcome = box.run_pytest({"solution.py": textwrap.dedent(solution), "test_solution.py": textwrap.dedent(tests)}, timeout)
    assert outcome.infra_error is None, outcome.infra_error
    assert outcome.isolation == "trusted", (outcome.isolation, outcome.isolation_note)
    good = box.run_pytest({"solution.py": GOOD, "test_solution.py": TESTS}, 10)
    assert good.all_passed and good.isolation == "trusted", good
    return outcome


PROBE = r'''
import ctypes, errno, os

def _status(pid="self"):
    with open("/proc/%s/status" % pid) as handle:
        return dict(line.split(":", 1) for line in handle.read().splitlines() if ":" in line)

def facts():
    status = _status()
    found = {"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": os.getgroups(),
             "caps": {k: int(status[k].strip(), 16) for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")},
             "no_new_privs": int(status.get("NoNewPrivs", "0").strip())}
    kinds = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink("/proc/self/fd/" + fd)
        except OSError:
            continue
        kinds.append(target.split(":")[0] if ":[" in target else "path")
    found["sockets"], found["pipes"] = kinds.count("socket"), kinds.count("pipe")
    found["other_processes"] = others = {}
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            uid = int(_status(name)["Uid"].split()[0])
        except (OSError, KeyError, ValueError):
            continue
        if uid != os.getuid():
            others[int(name)] = uid
    found["judge_seen"] = JUDGE in others.values()
    reached = []
    libc = ctypes.CDLL(None, use_errno=True)
    for pid, uid in others.items():
        for what in ("mem", "environ", "maps", "stack", "auxv", "syscall", "io"):
            try:
                with open("/proc/%d/%s" % (pid, what), "rb") as handle:
                    if handle.read(1):  # (a kernel thread's are empty to anyone)
                        reached.append("%d(%d)/%s" % (pid, uid, what))
            except (OSError, ValueError):
                pass
        for what in ("fd", "cwd", "root", "map_files"):
            try:
                if os.listdir("/proc/%d/%s" % (pid, what)):
                    reached.append("%d(%d)/%s" % (pid, uid, what))
            except OSError:
                pass
        try:
            os.kill(pid, 0)
            reached.append("%d(%d)/signal" % (pid, uid))
        except OSError:
            pass
        if libc.ptrace(16, pid, 0, 0) == 0:  # PTRACE_ATTACH
            reached.append("%d(%d)/ptrace" % (pid, uid))
            libc.ptrace(17, pid, 0, 0)
    # A process seen mid-fork (another run's candidate, still its parent's uid when listed) may be of
    # this uid by the time it is tried: only what is still another user's after the try counts.
    def still_other(entry):
        try:
            return int(_status(entry.split("(")[0])["Uid"].split()[0]) != os.getuid()
        except (OSError, KeyError, ValueError):
            return False  # gone
    found["reached"] = [entry for entry in reached if still_other(entry)]
    return found
'''


def test_the_candidate_reaches_no_other_users_process_and_holds_nothing(box):
    tests = f"""
    from solution import facts

    def test_boundary():
        found = facts()
        assert found["uid"] == found["euid"] == {CANDIDATE_UID} and found["gid"] == {CANDIDATE_UID}, found
        assert found["groups"] == [], found
        assert all(value == 0 for value in found["caps"].values()), found["caps"]
        assert found["no_new_privs"] == 1, found
        assert found["sockets"] == 1 and found["pipes"] == 0, found  # its own channel to the judge, nothing else
        assert found["judge_seen"], found  # (the judge runs as another user, in a process it can see...)
        assert found["reached"] == [], found["reached"]  # (...and can neither read, signal nor trace)
    """
    outcome = _run(box, PROBE.replace("JUDGE in", f"{JUDGE_UID} in"), tests)
    assert outcome.all_passed, [t.message for t in outcome.tests]


def _sandbox_processes(box):
    """{pid: /proc status} of the processes of ``box``'s (single, warm) sandbox, read on the host."""

    box.warm()
    worker = box._idle.get()
    box._idle.put(worker)
    if box.kind == "docker":
        pids = [int(row[0]) for row in worker.container.top(ps_args="-o pid")["Processes"]]
    else:
        from gcop_env.sandbox.supervisor.procs import descendants

        pids = [worker.proc.pid] + descendants(worker.proc.pid)
    found = {}
    for pid in pids:
        try:
            with open("/proc/%d/status" % pid) as handle:
                found[pid] = dict(line.split(":", 1) for line in handle.read().splitlines() if ":" in line)
        except OSError:
            pass
    return found


def test_the_sandboxs_processes_hold_only_what_they_need(box):
    """Read on the host: the judge server runs as the judge's user with no capability; the
    supervisor and the candidate server keep a few (changing user, and for the supervisor signalling
    and wiping the runs' processes and files), and no process can ever gain one (bounding set empty,
    no-new-privileges)."""
    run = box.run_pytest({"solution.py": GOOD, "test_solution.py": TESTS}, 10)
    assert run.all_passed and run.isolation == "trusted"
    processes = _sandbox_processes(box)
    users = sorted(int(status["Uid"].split()[0]) for status in processes.values())
    assert users.count(JUDGE_UID) == 1 and users.count(CANDIDATE_UID) == 0, users  # (between runs)
    for status in processes.values():
        uid = int(status["Uid"].split()[0])
        caps = {k: int(status[k].strip(), 16) for k in ("CapPrm", "CapEff", "CapBnd", "CapAmb")}
        assert int(status["NoNewPrivs"].strip()) == 1, status
        assert caps["CapBnd"] == 0 and caps["CapAmb"] == 0, (uid, caps)
        if uid == JUDGE_UID:
            assert caps["CapPrm"] == caps["CapEff"] == 0, caps
        elif int(status["PPid"].strip()) in processes:  # the candidate server: changing user only
            assert caps["CapEff"] == caps["CapPrm"] == (1 << 6) | (1 << 7), hex(caps["CapEff"])
        elif box.kind == "docker":
            allowed = (1 << 0x7) | (1 << 0x6) | (1 << 0x5) | (1 << 0x1) | (1 << 0x3) | (1 << 0x8)  # SETUID SETGID KILL DAC FOWNER SETPCAP
            assert caps["CapEff"] & ~allowed == 0, (uid, hex(caps["CapEff"]))


SECRET_SEARCH = r'''
import os, re, subprocess

MARK = b"def test_secret"

def _scan(data):
    found = re.search(rb"answer\(\) == '([0-9a-f]{32})'", data)
    return found.group(1).decode() if found else None

def _read(path, limit=1 << 20):
    try:
        with open(path, "rb") as handle:
            return handle.read(limit)
    except (OSError, ValueError):
        return b""

def _walk(top, depth):
    try:
        entries = os.listdir(top)
    except OSError:
        return
    for entry in entries:
        path = os.path.join(top, entry)
        if os.path.islink(path):
            continue
        if os.path.isdir(path):
            if depth and not path.startswith(("/proc", "/sys", "/usr", "/dev")):
                yield from _walk(path, depth - 1)
        else:
            yield path

def answer():
    places = []
    for base in ("/judge", "/work", "/tmp", "/dev/shm", "/var/tmp", os.path.dirname(os.getcwd()), "/"):
        places.extend(_walk(base, 3))
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            for what in ("cmdline", "environ", "mem"):
                places.append("/proc/%s/%s" % (pid, what))
            for what in ("cwd", "root"):
                places.extend(_walk("/proc/%s/%s" % (pid, what), 2))
            try:
                places.extend("/proc/%s/fd/%s" % (pid, fd) for fd in os.listdir("/proc/%s/fd" % pid))
            except OSError:
                pass
    for path in places:
        data = _read(path)
        if MARK in data and _scan(data):
            return _scan(data)
    try:  # a shell, as a person would
        found = subprocess.run(["sh", "-c", "grep -rs 'def test_secret' / --include=*.py -l 2>/dev/null | head -5"],
                               capture_output=True, timeout=5).stdout.split()
        for path in found:
            if _scan(_read(path)):
                return _scan(_read(path))
    except Exception:
        pass
    return "not found"
'''


def test_the_test_file_is_out_of_the_candidates_reach(box):
    """An oracle: the solution searches the file system, every process's /proc entries and a shell's
    grep for the tests' secret (the expected answer); finding it would make it pass."""
    token = secrets.token_hex(16)
    tests = f"from solution import answer\n\ndef test_secret():\n    assert answer() == '{token}'\n"
    outcome = _run(box, SECRET_SEARCH, tests, timeout=60)
    assert outcome.failed == 1 and not outcome.all_passed, outcome
    assert "not found" in outcome.tests[0].message, outcome.tests[0].message


def test_the_test_file_is_out_of_reach_under_pytests_runner_too(box):
    """The same with a test file pytest runs (a fixture): the judge writes it in its own directory."""
    token = secrets.token_hex(16)
    tests = f"""
    import pytest
    from solution import answer

    @pytest.fixture
    def expected():
        return '{token}'

    def test_secret(expected):
        assert answer() == expected  # answer() == '{token}'
    """
    outcome = _run(box, SECRET_SEARCH, tests, timeout=60)
    assert outcome.runner == "pytest" and outcome.failed == 1, outcome
    assert "not found" in outcome.tests[0].message


def test_killing_and_stopping_the_sandboxs_processes_fails_to_help(box):
    solution = """
    import os, signal

    def answer():
        for name in os.listdir("/proc"):
            if name.isdigit() and int(name) != os.getpid():
                for sig in (signal.SIGKILL, signal.SIGSTOP, signal.SIGTERM, signal.SIGINT):
                    try:
                        os.kill(int(name), sig)
                    except OSError:
                        pass
        try:
            os.kill(-1, signal.SIGKILL)  # every process it may signal: only its own user's (itself included)
        except OSError:
            pass
        return 41
    """
    outcome = _run(box, solution, "from solution import answer\n\ndef test_a():\n    assert answer() == 42\n")
    assert not outcome.all_passed and outcome.failed == 1, outcome


def test_tracing_the_judge_fails(box):
    solution = """
    import ctypes, os

    def answer():
        libc = ctypes.CDLL(None, use_errno=True)
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open("/proc/%s/status" % name) as handle:
                    uid = [l for l in handle if l.startswith("Uid:")][0].split()[1]
            except OSError:
                continue
            if uid == "65533":
                if libc.ptrace(16, int(name), 0, 0) == 0:  # PTRACE_ATTACH: would read the test's frames
                    return 42
                if libc.ptrace(0x4206, int(name), 0, 0) == 0:  # PTRACE_SEIZE
                    return 42
        return 41
    """
    outcome = _run(box, solution, "from solution import answer\n\ndef test_a():\n    assert answer() == 42\n")
    assert outcome.failed == 1, outcome


def test_garbage_on_the_channel_fails_the_test_and_the_rest(box):
    solution = """
    import os

    def answer():
        for fd in range(3, 64):
            try:
                os.write(fd, b"\\x00\\x00\\x00\\x05rjunk" * 100)
            except OSError:
                pass
        return 42

    def other():
        return 1
    """
    tests = """
    from solution import *

    def test_a():
        assert answer() == 42

    def test_b():
        assert other() == 1
    """
    outcome = _run(box, solution, tests)
    assert [t.outcome for t in outcome.tests] == ["failed", "failed"], outcome.tests
    assert "the solution's process failed" in outcome.tests[0].message, outcome.tests[0].message


@pytest.mark.parametrize("how", ["os._exit(0)", "os.kill(os.getpid(), 9)"])
def test_a_crash_inside_a_call_fails_that_test_even_if_the_test_catches_everything(box, how):
    solution = f"""
    import os

    def answer():
        {how}
    """
    tests = """
    import pytest
    from solution import answer

    def test_catches():
        try:
            answer()
        except BaseException:
            pass

    def test_raises_anything():
        with pytest.raises(Exception):
            answer()
    """
    outcome = _run(box, solution, tests)
    assert outcome.passed == 0 and outcome.failed == 2, outcome.tests


def test_a_huge_or_deep_message_fails_not_hangs(box):
    solution = """
    def answer():
        out = []
        for _ in range(100000):
            out = [out]
        return out

    def big():
        return "x" * (80 << 20)
    """
    tests = """
    from solution import *

    def test_deep():
        assert answer() is not None

    def test_big():
        assert len(big()) == 80 << 20
    """
    outcome = _run(box, solution, tests, timeout=60)
    assert outcome.passed == 0 and outcome.failed == 2, outcome.tests


def test_naming_the_harness_fails(box):
    """The candidate's side cannot make the judge resolve the harness's own names (its failure
    classes, its runners) or the tests' module: such a message is the candidate's failure."""
    solution = """
    import sys, types

    class HarnessFailure(Exception):
        pass

    HarnessFailure.__module__ = "gcop_env.sandbox.judge.remote"
    fake = types.ModuleType("test_solution")
    sys.modules["test_solution"] = fake

    def answer():
        raise HarnessFailure("the candidate's process did not start")

    def tests_module():
        return fake
    """
    tests = """
    from solution import *

    def test_a():
        assert answer() == 42

    def test_b():
        assert tests_module() is not None
    """
    outcome = _run(box, solution, tests)
    assert outcome.passed == 0 and outcome.infra_error is None, outcome


def test_in_process_runs_reach_no_server_socket(box):
    """Under the in-process fallback the candidate shares the tests' process; it still reaches
    neither the candidate server's nor the judge server's socket (writing garbage there would take
    the next trusted run down)."""
    solution = """
    import os

    def answer():
        hit = []
        for fd in range(3, 256):
            try:
                target = os.readlink("/proc/self/fd/%d" % fd)
            except OSError:
                continue
            if target.startswith("socket:"):
                hit.append(fd)
                try:
                    os.write(fd, b"\\xff" * 64)
                except OSError:
                    pass
        return hit
    """
    tests = "from solution import answer\n\ndef test_a(monkeypatch):\n    assert answer() == []\n"
    outcome = box.run_pytest({"solution.py": textwrap.dedent(solution), "test_solution.py": tests}, 10)
    assert outcome.isolation == "in-process" and outcome.all_passed, outcome
    good = box.run_pytest({"solution.py": GOOD, "test_solution.py": TESTS}, 10)
    assert good.all_passed and good.isolation == "trusted", good


def test_names_that_run_code_reach_the_tests_as_inert_stand_ins(box):
    """A solution may import ``eval`` or ``os.system``; if the tests call the solution's name for it,
    that runs nothing in the judge's process (the tests' own data would be its argument)."""
    solution = """
    import os, subprocess
    from os import system as check
    answer = eval
    """
    tests = """
    from solution import *

    def test_a():
        assert answer("6 * 7") == 42

    def test_b():
        assert check("true") == 0
    """
    outcome = _run(box, solution, tests)
    assert outcome.failed == 2, outcome.tests
    assert all("is not run by the tests under trusted isolation" in t.message for t in outcome.tests), outcome.tests
