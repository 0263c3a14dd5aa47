"""The sandbox contract: counts, the pass rule, concurrency, infra errors, backend choice."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from _sandbox_support import GOOD, TESTS, make_backend, require_docker, run_good, sandbox  # noqa: F401
from gcop_env.sandbox import PytestOutcome, make_sandbox


def test_counts_from_the_report(sandbox):
    tests = TESTS + "\n\ndef test_wrong():\n    assert answer() == 0\n\n\nimport pytest\n\n@pytest.mark.parametrize('x', [1, 2])\ndef test_param(x):\n    assert x\n"
    outcome = sandbox.run_pytest({"solution.py": GOOD, "test_solution.py": tests}, timeout=10)
    assert (outcome.collected, outcome.passed, outcome.failed) == (5, 4, 1)
    assert outcome.complete and not outcome.all_passed
    assert outcome.pass_fraction == pytest.approx(0.8)
    assert [t.outcome for t in outcome.tests if t.outcome != "passed"] == ["failed"]


def test_no_tests_is_not_a_pass(sandbox):
    outcome = sandbox.run_pytest({"solution.py": GOOD, "test_solution.py": "from solution import *\n"}, timeout=10)
    assert outcome.collected == 0 and not outcome.all_passed


def test_skipped_test_is_not_a_pass(sandbox):
    tests = TESTS + "\n\nimport pytest\n\ndef test_skip():\n    pytest.skip('no')\n"
    outcome = sandbox.run_pytest({"solution.py": GOOD, "test_solution.py": tests}, timeout=10)
    assert outcome.skipped == 1 and not outcome.all_passed


def test_import_error_is_a_collection_error(sandbox):
    outcome = sandbox.run_pytest({"solution.py": "import no_such_module\n", "test_solution.py": TESTS}, timeout=10)
    assert outcome.collect_errors and outcome.collected == 0 and not outcome.all_passed
    assert "no_such_module" in outcome.collect_errors[0]


def test_concurrent_runs_get_their_own_verdicts(sandbox):
    kind = sandbox.kind
    with make_backend(kind, pool_size=2) as box:
        jobs = [GOOD if i % 2 == 0 else GOOD.replace("42", "41") for i in range(12)]
        with ThreadPoolExecutor(4) as pool:
            outcomes = list(pool.map(lambda s: box.run_pytest({"solution.py": s, "test_solution.py": TESTS}, 10), jobs))
    assert [o.all_passed for o in outcomes] == [i % 2 == 0 for i in range(12)]


def test_process_backend_infra_error():
    with make_sandbox("process", python="/nonexistent/python", start_timeout=5) as box:
        outcome = box.run_pytest({"solution.py": GOOD, "test_solution.py": TESTS}, timeout=5)
    assert outcome.infra_error and not outcome.all_passed


@pytest.mark.docker
def test_docker_missing_image_is_an_infra_error():
    require_docker()
    with make_sandbox("docker", image="gcop-sandbox:no-such-tag", pool_size=1) as box:
        outcome = box.run_pytest({"solution.py": GOOD, "test_solution.py": TESTS}, timeout=5)
    assert outcome.infra_error


@pytest.mark.docker
def test_docker_cold_mode_and_locked_down_container():
    require_docker()
    probe = (
        "import os\n"
        "def answer():\n"
        "    status = open('/proc/self/status').read()\n"
        "    caps = [l for l in status.splitlines() if l.startswith('CapEff')][0].split()[1]\n"
        "    return dict(uid=os.getuid(), caps=int(caps, 16), pid1=open('/proc/1/cmdline').read().startswith('python3'),\n"
        "                ro=os.statvfs('/').f_flag & os.ST_RDONLY)\n"
    )
    tests = "from solution import *\n\ndef test_locked():\n    info = answer()\n    assert info['uid'] == 65534 and info['caps'] == 0 and info['pid1'] and info['ro'], info\n"
    with make_sandbox("docker", reuse=False, pool_size=1) as box:
        outcome = box.run_pytest({"solution.py": probe, "test_solution.py": tests}, timeout=10)
    assert outcome.all_passed, outcome.tests


def test_make_sandbox_auto_says_what_it_chose(caplog):
    with caplog.at_level("INFO", logger="gcop_env.sandbox"):
        box = make_sandbox("auto", pool_size=1, image="gcop-sandbox:no-such-tag")
    try:
        assert box.kind == "process"
        assert "process backend" in caplog.text
    finally:
        box.close()
    with pytest.raises(ValueError, match="docker, process, auto"):
        make_sandbox("vm")


@pytest.mark.docker
def test_image_check():
    require_docker()
    from gcop_env.cli.sandbox import sandbox_cli

    assert sandbox_cli(["check"]) == 0


def test_outcome_infra_is_never_a_pass():
    assert not PytestOutcome.infra("boom").all_passed
    assert PytestOutcome.infra("boom").pass_fraction == 0.0
