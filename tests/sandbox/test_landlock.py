"""The process backend's file-system confinement (Landlock): what a candidate's process may open.

A world-readable file outside the run's allowed paths (a dataset's tests, another copy of the run's
test file) must be out of the candidate's reach, in trusted runs and in-process runs alike, and in the
processes it starts; what honest solutions need (the Python installation, numpy, zoneinfo, temp
files, /dev/null, a subprocess) must still work. The same probe on a sandbox made with
``confine=False`` reads the file: what stops it is Landlock, not the file's mode. Where the kernel
has no Landlock the sandbox says so (``versions["filesystem"]``), which is tested too.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import textwrap

import pytest

from _sandbox_support import GOOD, TESTS, make_backend
from gcop_env.sandbox.supervisor import landlock

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the process backend drops to the run users only as root")


def _kernel_abi() -> int:
    try:
        return landlock._Api().abi()
    except Exception:
        return 0


needs_landlock = pytest.mark.skipif(_kernel_abi() < 1, reason="this kernel has no Landlock")

SECRET = "the expected value is 1234567"

PROBE = r'''
import os, subprocess, tempfile, time

def run(argv):
    """subprocess.run, again after a fork refused for the moment (EAGAIN: every run of the process
    backend is `nobody`, so other sandboxes on the machine count against the same process limit)."""
    for attempt in range(50):
        try:
            return subprocess.run(argv, capture_output=True, text=True)
        except BlockingIOError:
            time.sleep(0.1)
    return subprocess.run(argv, capture_output=True, text=True)

def _open(path):
    try:
        with open(path) as handle:
            return "read: " + handle.read()
    except OSError as exc:
        return type(exc).__name__

def reach(path):
    """What this process and a child (cat) get from path, and whether the directory lists."""
    child = run(["cat", path])
    try:
        listing = sorted(os.listdir(os.path.dirname(path)))
    except OSError as exc:
        listing = type(exc).__name__
    return {"open": _open(path), "cat": child.stdout if child.returncode == 0 else "denied", "listdir": listing}

def honest():
    """What everyday solutions do: all must work under the confinement."""
    import json, zoneinfo
    import numpy
    zone = str(zoneinfo.ZoneInfo("Europe/Paris"))
    with tempfile.TemporaryDirectory() as scratch:
        with open(os.path.join(scratch, "x.txt"), "w") as handle:
            handle.write("ok")
        os.rename(os.path.join(scratch, "x.txt"), os.path.join(scratch, "y.txt"))
        with open(os.path.join(scratch, "y.txt")) as handle:
            text = handle.read()
    with open(os.devnull, "w") as sink:
        sink.write("x")
    random_bytes = len(open("/dev/urandom", "rb").read(8))
    own = run(["cat", "solution.py"]).stdout.startswith("\nimport os")
    echoed = run(["sh", "-c", "echo hi"]).stdout.strip()
    return [zone, text, random_bytes, int(numpy.arange(4).sum()), json.dumps([1]), own, echoed]
'''

PROBE_TESTS = '''
from solution import reach, honest

def test_report():
    print("REACH", reach(%r))
    print("HONEST", honest())
    assert False  # (the output is what the host reads)
'''


@pytest.fixture(scope="module")
def outside():
    """A world-readable file in a world-readable directory outside every allowed path."""
    folder = tempfile.mkdtemp(prefix="gcop-landlock-", dir="/tmp")
    os.chmod(folder, 0o755)
    path = os.path.join(folder, "test_copy.py")
    with open(path, "w") as handle:
        handle.write(SECRET)
    os.chmod(path, 0o644)
    yield path
    shutil.rmtree(folder, ignore_errors=True)


def _report(box, path, test_file_extra=""):
    outcome = box.run_pytest({"solution.py": PROBE, "test_solution.py": PROBE_TESTS % path + test_file_extra}, 30)
    assert outcome.infra_error is None, outcome.infra_error
    lines = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in outcome.output.splitlines()
             if line.startswith(("REACH ", "HONEST "))}
    assert set(lines) == {"REACH", "HONEST"}, outcome.output[-3000:]
    return outcome, eval(lines["REACH"]), eval(lines["HONEST"])  # (our own probe's repr of str/list/dict)


HONEST = ["Europe/Paris", "ok", 8, 6, "[1]", True, "hi"]


@needs_landlock
@pytest.mark.parametrize("isolation, drop", [("auto", True), ("in-process", True), ("auto", False)],
                         ids=["trusted", "in-process", "one-user"])
def test_candidate_cannot_read_a_world_readable_file_outside_its_paths(outside, isolation, drop):
    """Trusted runs, in-process runs, and a sandbox with one user (no drop: the run keeps the host's
    uid, root here, and only Landlock stands between it and the file)."""
    box = make_backend("process", pool_size=1, isolation=isolation, drop_privileges=drop)
    try:
        outcome, reach, honest = _report(box, outside)
        assert box.versions["filesystem"].startswith("confined by Landlock"), box.versions
    finally:
        box.close()
    assert outcome.isolation == ("trusted" if isolation == "auto" and drop else "in-process")
    assert reach == {"open": "PermissionError", "cat": "denied", "listdir": "PermissionError"}, reach
    assert honest == HONEST


def test_unconfined_sandbox_reads_it_and_says_so(outside):
    """The control: without Landlock the same probe reads the file (so the denial above is
    Landlock's, not the file's mode), and the sandbox does not claim a confinement it lacks."""
    box = make_backend("process", pool_size=1, confine=False)
    try:
        _outcome, reach, honest = _report(box, outside)
        state = box.versions["filesystem"]
    finally:
        box.close()
    assert reach["open"] == "read: " + SECRET and reach["cat"] == SECRET, reach
    assert honest == HONEST
    assert state.startswith("host files NOT confined"), state


@needs_landlock
def test_dataset_and_other_runs_are_out_of_reach(outside):
    """The shared data, the host's home and other runs' work dirs: nothing lists, nothing opens."""
    box = make_backend("process", pool_size=1)
    solution = PROBE + textwrap.dedent('''
        def around():
            found = {}
            for path in ("/work", "/root", "/home", "/tmp", "/var/tmp", "/dev/shm", os.path.dirname(os.getcwd())):
                try:
                    found[path] = len(os.listdir(path))
                except OSError as exc:
                    found[path] = type(exc).__name__
            return found
    ''')
    tests = "from solution import around\n\ndef test_report():\n    print('AROUND', around())\n    assert False\n"
    try:
        outcome = box.run_pytest({"solution.py": solution, "test_solution.py": tests}, 30)
        good = box.run_pytest({"solution.py": GOOD, "test_solution.py": TESTS}, 10)
    finally:
        box.close()
    line = [x for x in outcome.output.splitlines() if x.startswith("AROUND ")]
    assert line, outcome.output[-3000:]
    found = eval(line[0].split(" ", 1)[1])
    assert set(found.values()) <= {"PermissionError", "FileNotFoundError"}, found
    assert good.all_passed and good.isolation == "trusted", good


def test_handled_rights_follow_the_abi():
    base = (1 << 13) - 1
    assert landlock.handled_fs(1) == base
    assert landlock.handled_fs(2) == base | landlock.REFER
    assert landlock.handled_fs(3) == landlock.handled_fs(4) == base | landlock.REFER | landlock.TRUNCATE
    assert landlock.handled_fs(5) == landlock.handled_fs(7) == base | landlock.REFER | landlock.TRUNCATE | landlock.IOCTL_DEV
    assert landlock.scopes(5) == 0 and landlock.scopes(6) == landlock.SCOPE_SIGNAL | landlock.SCOPE_ABSTRACT_UNIX_SOCKET


@pytest.mark.parametrize("code, words", [(errno.ENOSYS, "the kernel has no Landlock"),
                                         (errno.EOPNOTSUPP, "Landlock is not enabled")])
def test_without_landlock_the_state_says_not_confined(monkeypatch, code, words):
    def refuse(self):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(landlock._Api, "abi", refuse)
    confinement = landlock.Confinement()
    assert not confinement.active and confinement.rules == []
    assert confinement.state.startswith("host files NOT confined: " + words), confinement.state


def test_python_dirs_never_include_the_root():
    dirs = landlock.python_dirs()
    assert "/" not in dirs and dirs
    assert all(os.path.isdir(d) for d in dirs)


@needs_landlock
def test_sandbox_check_says_the_process_backend_is_confined(capsys):
    from gcop_env.cli.sandbox import sandbox_cli

    assert sandbox_cli(["check", "--sandbox", "process"]) == 0
    out = capsys.readouterr()
    assert "filesystem: confined by Landlock (ABI " in out.out, out
    assert "warning" not in out.err


def test_sandbox_check_warns_when_unconfined(monkeypatch, capsys):
    from gcop_env.cli.sandbox import sandbox_cli
    from gcop_env.sandbox import process_backend

    class Unconfined(process_backend.ProcessSandbox):
        def __init__(self, **options):
            super().__init__(confine=False, **options)

    monkeypatch.setattr(process_backend, "ProcessSandbox", Unconfined)
    assert sandbox_cli(["check", "--sandbox", "process"]) == 0
    out = capsys.readouterr()
    assert "filesystem: host files NOT confined" in out.out, out
    assert "warning: candidate code can read every file" in out.err
