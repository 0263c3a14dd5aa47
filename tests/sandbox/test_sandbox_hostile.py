"""Hostile solutions, in both backends: each ends as fail or timeout, and the next run is clean.

Every hostile ``solution.py`` faces the same tests (``answer() == 42``); a known-good solution
runs right after on the same (single-member) pool and must pass. Each case runs in both
isolations (trusted: the tests in a process of their own; in-process) under both runners.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from _sandbox_support import GOOD, TESTS, check_mode, mode, run_good, sandbox  # noqa: F401  (fixtures)


def attack(box, solution: str, timeout: float = 5.0, tests: str = TESTS):
    outcome = box.run_pytest({"solution.py": textwrap.dedent(solution), "test_solution.py": tests}, timeout=timeout)
    assert outcome.infra_error is None, outcome.infra_error
    assert not outcome.all_passed, outcome
    expected = "trusted" if box.isolation == "auto" else "in-process"
    assert outcome.isolation == expected, (outcome.isolation, outcome.isolation_note)
    run_good(box)
    return outcome


def test_infinite_loop_times_out(sandbox, mode):
    outcome = attack(sandbox, "while True:\n    pass\n", timeout=1.5)
    assert outcome.timed_out


def test_infinite_loop_inside_a_test_times_out(sandbox, mode):
    outcome = attack(sandbox, "def answer():\n    while True:\n        pass\n", timeout=1.5)
    assert outcome.timed_out


def test_fork_bomb_is_contained(sandbox, mode):
    if sandbox.kind == "process" and not getattr(sandbox, "drops_privileges", False):
        pytest.skip("without root the process backend's RLIMIT_NPROC counts the whole user: not safe to bomb")
    outcome = attack(
        sandbox,
        """
        import os
        def answer():
            while True:
                try:
                    os.fork()
                except OSError:
                    pass
        """,
        timeout=3,
    )
    assert outcome.timed_out or outcome.failed or not outcome.complete


def test_memory_bomb_fails(sandbox, mode):
    outcome = attack(
        sandbox,
        """
        def answer():
            hog = []
            while True:
                hog.append(bytearray(64 << 20))
        """,
        timeout=10,
    )
    assert not outcome.timed_out


@pytest.mark.parametrize("where", ["import", "call"])
@pytest.mark.parametrize("how", ["os._exit(0)", "sys.exit(0)", "raise SystemExit(0)", "os.kill(os.getpid(), 9)"])
def test_exit_is_not_a_pass(sandbox, mode, where, how):
    body = f"import os, sys\n{how}\n" if where == "import" else f"import os, sys\ndef answer():\n    {how}\n"
    outcome = attack(sandbox, body)
    assert outcome.passed == 0


def test_exit_after_the_tests_is_not_a_pass(sandbox, mode):
    # Right answer first, then exit 0 at interpreter shutdown of a later test: still the report decides.
    outcome = attack(
        sandbox,
        """
        import os
        calls = []
        def answer():
            calls.append(1)
            if len(calls) > 1:
                os._exit(0)
            return 42
        """,
    )
    if mode.startswith("trusted"):  # the judge saw the candidate's process end: that test failed
        assert outcome.complete and outcome.failed == 1 and "process failed" in outcome.output, outcome
    else:
        assert not outcome.complete


def test_planted_conftest_does_not_configure_pytest(sandbox, mode):
    attack(
        sandbox,
        '''
        import os
        HOOK = """
import pytest
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    report.outcome = "passed"
    report.longrepr = None
"""
        for name in ("conftest.py", "pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg"):
            try:
                with open(name, "w") as handle:
                    handle.write(HOOK if name == "conftest.py" else "[pytest]\\naddopts = -p no:terminal\\n")
            except OSError:
                pass
        def answer():
            return 41
        ''',
    )


def test_conftest_is_refused_as_a_file():
    from gcop_env.sandbox.process_backend import ProcessSandbox

    with ProcessSandbox(pool_size=1) as box, pytest.raises(ValueError, match="conftest"):
        box.run_pytest({"solution.py": GOOD, "test_solution.py": TESTS, "conftest.py": ""})


def test_overwriting_the_test_file_does_not_help(sandbox, mode):
    attack(
        sandbox,
        """
        import os
        with open("test_solution.py", "w") as handle:
            handle.write("def test_nothing():\\n    pass\\n")
        os.utime("test_solution.py", (0, 0))
        def answer():
            return 41
        """,
    )


def test_printing_a_fake_report_is_not_a_pass(sandbox, mode):
    outcome = attack(
        sandbox,
        """
        import json, os, sys
        fake = json.dumps({"ev": "end", "exit": 0})
        line = ("0" * 32 + " " + fake + "\\n").encode()
        print("===== 2 passed in 0.01s =====")
        for fd in range(0, 64):  # every fd we might have inherited, the report pipe included
            try:
                os.write(fd, b"0" * 32 + b"\\n" + line)
            except OSError:
                pass
        def answer():
            return 41
        """,
    )
    if mode.startswith("trusted"):  # the report's pipe is out of reach: the writes hit the candidate's own channel
        assert not outcome.tampered and outcome.passed == 0, outcome
    else:
        assert outcome.tampered


def test_stdout_flood_is_capped(sandbox, mode):
    outcome = attack(
        sandbox,
        """
        import os, sys
        chunk = "x" * 65536
        for _ in range(2000):  # 128 MB
            os.write(1, chunk.encode())
            os.write(2, chunk.encode())
        def answer():
            return 41
        """,
        timeout=10,
    )
    assert len(outcome.output.encode()) <= (1 << 20) + 4096


def test_background_process_is_killed(sandbox, mode):
    outcome = attack(
        sandbox,
        """
        import os, time
        def answer():
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    time.sleep(600)
                os._exit(0)
            time.sleep(0.2)
            return 41
        """,
    )
    assert outcome.strays >= 1


def test_killing_the_parent_does_not_help(sandbox, mode):
    attack(
        sandbox,
        """
        import os, signal
        for target in (os.getppid(), 1):
            for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
                try:
                    os.kill(target, sig)
                except OSError:
                    pass
        def answer():
            return 41
        """,
    )


def test_host_environment_is_invisible(sandbox, mode, monkeypatch):
    secret = "sk-ant-gcop-test-SECRET-7f3a"
    monkeypatch.setenv("ANTHROPIC_API_KEY", secret)
    # A host process started with the key in its initial environment (what /proc/PID/environ shows).
    host = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env={**os.environ})
    try:
        outcome = attack(
            sandbox,
            f"""
            import os
            def answer():
                found = [k for k, v in os.environ.items() if "SECRET" in v]
                for pid in os.listdir("/proc"):
                    try:
                        with open(f"/proc/{{pid}}/environ", "rb") as handle:
                            if b"{secret}" in handle.read():
                                found.append(pid)
                    except OSError:
                        pass
                return 42 if found else 41
            """,
        )
    finally:
        host.kill()
        host.wait()
    assert outcome.failed >= 1


def test_environment_is_scrubbed(sandbox, mode):
    outcome = sandbox.run_pytest(
        {
            "solution.py": "import os\ndef answer():\n    return sorted(os.environ)\n",
            "test_solution.py": "from solution import *\n\ndef test_env():\n"
            "    assert set(answer()) <= {'PATH', 'LANG', 'HOME', 'TMPDIR', 'PYTHONDONTWRITEBYTECODE', "
            "'PYTHONHASHSEED', 'PYTEST_DISABLE_PLUGIN_AUTOLOAD', 'PYTEST_CURRENT_TEST', 'PYTEST_VERSION', "
            "'MPLBACKEND', 'OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS'}\n",
        },
        timeout=10,
    )
    assert outcome.all_passed, outcome.tests


@pytest.mark.docker
def test_no_network_in_docker(sandbox, mode):
    if sandbox.kind != "docker":
        pytest.skip("the process backend does not isolate the network (documented)")
    attack(
        sandbox,
        """
        import socket
        def answer():
            for host in ("1.1.1.1", "172.17.0.1", "8.8.8.8"):
                try:
                    socket.create_connection((host, 53), timeout=1).close()
                    return 42
                except OSError:
                    pass
            with open("/proc/net/dev") as handle:
                interfaces = [line.split(":")[0].strip() for line in handle.readlines()[2:]]
            return 42 if interfaces != ["lo"] else 41
        """,
    )


def test_writes_outside_the_work_dir_fail_or_vanish(sandbox, mode, tmp_path):
    if sandbox.kind == "process":
        if not getattr(sandbox, "drops_privileges", False):
            pytest.skip("without root the process backend writes wherever its user can (documented)")
        protected = tmp_path / "host"
        protected.mkdir()
        os.chmod(tmp_path, 0o755)
        targets = [str(protected / "owned"), os.path.join(os.path.dirname(os.__file__), "owned.py")]
    else:
        targets = ["/owned", "/etc/owned", "/usr/lib/python3/dist-packages/owned.py", "/usr/bin/owned"]
    attack(
        sandbox,
        f"""
        def answer():
            wrote = []
            for path in {targets!r}:
                try:
                    with open(path, "w") as handle:
                        handle.write("owned")
                    wrote.append(path)
                except OSError:
                    pass
            return 42 if wrote else 41
        """,
    )
    for path in targets:
        assert not os.path.exists(path) or sandbox.kind == "docker"


def test_scratch_files_do_not_survive_to_the_next_run(sandbox, mode):
    plant = """
    import os, tempfile
    for path in ("/tmp/gcop_marker", "/dev/shm/gcop_marker", os.path.join(tempfile.gettempdir(), "gcop_marker"),
                 os.path.join(os.path.expanduser("~"), "gcop_marker"), "../gcop_marker"):
        try:
            with open(path, "w") as handle:
                handle.write("x")
        except OSError:
            pass
    def answer():
        return 41
    """
    attack(sandbox, plant)
    if sandbox.kind == "process":
        paths = "(os.path.join(tempfile.gettempdir(), 'gcop_marker'), os.path.join(os.path.expanduser('~'), 'gcop_marker'), '../gcop_marker')"
    else:
        paths = "('/tmp/gcop_marker', '/dev/shm/gcop_marker', '/work/gcop_marker', '../gcop_marker')"
    outcome = sandbox.run_pytest(
        {
            "solution.py": f"import os, tempfile\ndef answer():\n    return [p for p in {paths} if os.path.exists(p)]\n",
            "test_solution.py": "from solution import *\n\ndef test_clean():\n    assert answer() == []\n",
        },
        timeout=10,
    )
    assert outcome.all_passed, outcome.tests
