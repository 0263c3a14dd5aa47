"""Sandboxes across Docker engines: host URLs, least-loaded routing, an engine killed mid-run, re-adding it.

The two-engine tests start a second ``dockerd`` on this machine (tests/_second_engine.py) and copy
the sandbox image into it once (its data root persists, so later sessions skip the copy).
"""

from __future__ import annotations

import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from _sandbox_support import GOOD, TESTS, require_docker
from gcop_env.sandbox import make_sandbox
from gcop_env.sandbox.base import GRACE_S
from gcop_env.sandbox.docker_backend import DockerSandbox
from gcop_env.sandbox.hosts import DockerFleet, DockerHost, HostState, copy_image, image_problem, parse_hosts
from gcop_env.sandbox.image import DEFAULT_IMAGE
from gcop_env.sandbox.process_backend import ProcessSandbox
from gcop_env.validators.base import Status
from gcop_env.validators.humaneval import HumanEvalValidator, load_humaneval

FIRST = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
DEAD = "unix:///tmp/gcop-no-engine-here.sock"


# ------------------------------------------------------------------------------ no engine needed


def test_hosts_are_docker_host_urls():
    hosts = parse_hosts(" unix:///var/run/docker.sock, tcp://gpu2:2376 ,ssh://ci@gpu3")
    assert [h.url for h in hosts] == ["unix:///var/run/docker.sock", "tcp://gpu2:2376", "ssh://ci@gpu3"]
    assert parse_hosts([{"url": "tcp://gpu2:2376", "pool_size": 8, "tls": True}])[0] == DockerHost("tcp://gpu2:2376", 8, True)
    with pytest.raises(ValueError, match="DOCKER_HOST-style URL"):
        parse_hosts("gpu2:2376")
    with pytest.raises(ValueError, match="listed twice"):
        parse_hosts("tcp://a:2376,tcp://a:2376")
    with pytest.raises(ValueError, match="no Docker host"):
        parse_hosts(" , ")


def test_tls_host_names_the_missing_certificates(tmp_path):
    with pytest.raises(ValueError, match="ca.pem"):
        DockerHost("tcp://127.0.0.1:1", tls=True, cert_path=str(tmp_path)).client(1.0)


def test_no_engine_answers_is_infra_never_a_verdict(caplog):
    with caplog.at_level("WARNING", logger="gcop_env.sandbox"), DockerFleet([DEAD], ping_timeout=1) as fleet:
        outcome = fleet.run_pytest({"solution.py": GOOD, "test_solution.py": TESTS}, timeout=5)
        assert [s.state for s in fleet.stats()] == [HostState.DOWN]
    assert outcome.infra_error and "no Docker host left" in outcome.infra_error and DEAD in outcome.infra_error
    assert not outcome.all_passed and outcome.backend == "docker"
    assert "out of the sandbox pool" in caplog.text


def test_env_hosts_with_auto_fall_back_to_the_process_backend(monkeypatch, caplog):
    monkeypatch.setenv("GCOP_DOCKER_HOSTS", DEAD)
    with caplog.at_level("WARNING", logger="gcop_env.sandbox"):
        box = make_sandbox("auto", pool_size=1, ping_timeout=1)
    box.close()
    assert isinstance(box, ProcessSandbox) and "no Docker host is usable" in caplog.text
    with make_sandbox("docker", ping_timeout=1) as fleet:  # docker was asked for: no silent fallback
        assert isinstance(fleet, DockerFleet) and fleet.hosts == [DEAD]


# ------------------------------------------------------------------------------ two engines


@pytest.fixture(scope="module")
def second_engine(request):
    """A second dockerd with the sandbox image (copied from the first engine when it differs).

    Module-scoped: only this module uses it, so it is stopped (and its lock released) as soon as
    the module is done rather than at the end of the whole session."""
    require_docker()
    from _second_engine import URL, SecondEngine, unavailable

    why = unavailable()
    if why:
        if os.environ.get("GCOP_REQUIRE_DOCKER"):
            pytest.fail(f"GCOP_REQUIRE_DOCKER is set but a second Docker engine cannot start: {why}")
        pytest.skip(why)
    import docker

    engine = SecondEngine()
    try:
        up_s = engine.start()
        copy_s = copy_image(docker.from_env(), docker.DockerClient(base_url=URL), DEFAULT_IMAGE)
        copied = f"image copied in {copy_s:.1f}s" if copy_s else "image already there (same id)"
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:  # the figures of the set-up, shown even when output is captured
            reporter.write_line(f"\nsecond dockerd at {URL}: up in {up_s:.1f}s, {copied}")
        engine.url = URL
        yield engine
    finally:
        engine.stop()


def _problems(n: int, seed: int = 7):
    return random.Random(seed).sample(load_humaneval(), n)


def _replies(problems, sleep: float = 0.0):
    """Half right (the reference solution), half wrong; ``sleep`` (once, at import) keeps a run in flight."""
    pause = f"import time\ntime.sleep({sleep})\n\n" if sleep else ""
    jobs = [(p, _fenced(pause + p.solution), Status.PASS) for p in problems]
    wrong = "def {}(*args, **kwargs):\n    return None\n"
    return jobs + [(p, _fenced(pause + wrong.format(p.metadata["entry_point"])), Status.FAIL) for p in problems]


def _fenced(code: str) -> str:
    return f"Here is the code:\n```python\n{code}\n```\n"


def _validate_all(validator, jobs, threads: int = 4):
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda job: validator.validate(job[0], job[1]), jobs))


@pytest.mark.docker
def test_runs_spread_over_both_engines_with_single_engine_verdicts(second_engine):
    jobs = _replies(_problems(8))
    with DockerSandbox(pool_size=2) as single:
        alone = _validate_all(HumanEvalValidator(sandbox=single, infra_retries=0), jobs)
    hosts = f"{FIRST},{second_engine.url}"
    validator = HumanEvalValidator(sandbox="docker", infra_retries=0, sandbox_options={"hosts": hosts, "pool_size": 2})
    try:
        validator.sandbox.warm()  # container starts (slow on a cold data root) are not what is compared
        spread = _validate_all(validator, jobs)
        stats = validator.sandbox.stats()
    finally:
        validator.close()
    assert [r.status for r in alone] == [job[2] for job in jobs]
    assert [(r.status, r.reward) for r in spread] == [(r.status, r.reward) for r in alone]
    # Both engines did work; how much each did follows their speed (least in-flight per capacity).
    assert all(s.validations >= 1 and s.failures == 0 for s in stats), stats
    assert sum(s.validations for s in stats) == len(jobs)


@pytest.mark.docker
def test_an_engine_over_tcp_with_tls(second_engine):
    from _second_engine import TLS_DIR

    if second_engine.tls_url is None:
        pytest.skip("openssl is not installed: no certificates for a TLS engine")
    with pytest.raises(ValueError, match="ca.pem"):  # TLS asked for, certificates missing: said so, not plain HTTP
        DockerHost(second_engine.tls_url, tls=True, cert_path=str(TLS_DIR / "missing")).client(5)
    host = DockerHost(second_engine.tls_url, tls=True, cert_path=str(TLS_DIR))
    with DockerFleet([host], pool_size=1) as fleet:
        good = fleet.run_pytest({"solution.py": GOOD, "test_solution.py": TESTS}, timeout=10)
        bad = fleet.run_pytest({"solution.py": GOOD.replace("42", "41"), "test_solution.py": TESTS}, timeout=10)
    assert good.all_passed and not bad.all_passed and bad.infra_error is None
    assert good.host == second_engine.tls_url
    with DockerFleet([DockerHost(second_engine.tls_url, tls=False)], ping_timeout=2) as plain:  # no client certificate
        assert plain.stats()[0].state is HostState.DOWN


def _kill_when_busy(engine, fleet, host: int, runs: int) -> tuple[threading.Thread, threading.Event]:
    """Start a thread that kills ``engine`` mid-run: once the fleet's ``host`` has finished ``runs`` runs
    and has ``runs`` in flight (it gives up after 60 s). The event says whether it did."""
    killed = threading.Event()

    def kill_when_busy() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            stats = fleet.stats()[host]
            if stats.validations >= runs and stats.in_flight >= runs:
                engine.kill()
                killed.set()
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_when_busy)
    killer.start()
    return killer, killed


@pytest.mark.docker
def test_an_engine_killed_mid_run_loses_nothing_and_comes_back(second_engine, caplog):
    jobs = _replies(_problems(6, seed=11), sleep=0.3)
    random.Random(3).shuffle(jobs)
    options = {"hosts": [FIRST, second_engine.url], "pool_size": 2, "max_backoff": 1.0}
    validator = HumanEvalValidator(sandbox="docker", infra_retries=0, sandbox_options=options)
    fleet = validator.sandbox
    try:
        with caplog.at_level("INFO", logger="gcop_env.sandbox"):
            killer, killed = _kill_when_busy(second_engine, fleet, host=1, runs=2)
            results = _validate_all(validator, jobs)
            killer.join()
            assert killed.is_set(), "the second engine never had runs in flight"
            first, second = fleet.stats()
            # Nothing lost, nothing scored wrong: every validation has its true verdict.
            assert [r.status for r in results] == [job[2] for job in jobs], [r.details for r in results]
            assert second.state is HostState.DOWN and second.removals == 1 and second.moved >= 1, second
            assert first.validations + second.validations == len(jobs) and first.failures == 0
            assert "stopped answering" in caplog.text

            second_engine.start()  # it answers again: the health check adds it back
            deadline = time.monotonic() + 60
            while fleet.stats()[1].state is not HostState.UP and time.monotonic() < deadline:
                time.sleep(0.2)
            second = fleet.stats()[1]
            assert second.state is HostState.UP and second.readds == 1, second
            assert "is back" in caplog.text
            before = second.validations
            again = _validate_all(validator, _replies(_problems(4, seed=5)))
            assert [r.status for r in again] == [Status.PASS] * 4 + [Status.FAIL] * 4
            assert fleet.stats()[1].validations > before  # routed to it again
    finally:
        validator.close()


@pytest.mark.docker
def test_a_hung_engine_is_removed_by_the_heartbeat_and_its_runs_go_elsewhere(second_engine, caplog):
    jobs = _replies(_problems(4, seed=17), sleep=1.0)
    fleet = DockerFleet([FIRST, second_engine.url], pool_size=2, heartbeat=0.5, ping_timeout=1.0, max_backoff=1.0)
    fleet.warm()  # a frozen engine would also stall a container start (api_timeout), which no heartbeat aborts
    validator = HumanEvalValidator(sandbox=fleet, infra_retries=0)
    frozen = threading.Event()

    def freeze_when_busy() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if fleet.stats()[1].in_flight >= 1:
                second_engine.freeze()
                frozen.set()
                return
            time.sleep(0.01)

    try:
        with caplog.at_level("INFO", logger="gcop_env.sandbox"):
            freezer = threading.Thread(target=freeze_when_busy)
            freezer.start()
            started = time.monotonic()
            results = _validate_all(validator, jobs)
            took = time.monotonic() - started
            freezer.join()
            assert frozen.is_set()
            first, second = fleet.stats()
            assert [r.status for r in results] == [job[2] for job in jobs], str([(r.status, r.details) for r in results if r.status not in (Status.PASS, Status.FAIL)])
            assert second.state is not HostState.UP and second.removals == 1 and second.moved >= 1, second
            assert "missed two heartbeats" in caplog.text
            assert took < validator.timeout + GRACE_S  # sooner than one stuck run alone would give up without a heartbeat
            second_engine.freeze(False)
            deadline = time.monotonic() + 30
            while fleet.stats()[1].state is not HostState.UP and time.monotonic() < deadline:
                time.sleep(0.1)
            assert fleet.stats()[1].state is HostState.UP and fleet.stats()[1].readds == 1
    finally:
        second_engine.freeze(False)
        fleet.close()


@pytest.mark.docker
def test_last_engine_killed_mid_run_is_infra_never_a_wrong_verdict(second_engine):
    jobs = _replies(_problems(4, seed=13), sleep=0.5)
    fleet = DockerFleet([second_engine.url], pool_size=2, check_interval=30)
    validator = HumanEvalValidator(sandbox=fleet, infra_retries=0)
    try:
        killer, killed = _kill_when_busy(second_engine, fleet, host=0, runs=1)
        results = _validate_all(validator, jobs, threads=2)
        killer.join()
    finally:
        fleet.close()
        second_engine.start()  # for the tests that follow
    assert killed.is_set()
    assert any(r.status == Status.INFRA for r in results), [r.status for r in results]
    for result, job in zip(results, jobs):
        assert result.status in (job[2], Status.INFRA), result.details
        if result.status == Status.INFRA:
            assert "no Docker host left" in result.details["error"], result.details


@pytest.mark.docker
def test_an_engine_without_the_image_says_how_to_copy_it(second_engine):
    import docker

    second = docker.DockerClient(base_url=second_engine.url)
    second.images.get(DEFAULT_IMAGE).tag("gcop-sandbox", "only-on-the-second-engine")
    try:
        problem = image_problem(docker.from_env(), "gcop-sandbox:only-on-the-second-engine", FIRST)
        assert problem and f"docker save gcop-sandbox:only-on-the-second-engine | docker -H {FIRST} load" in problem
        with DockerFleet([FIRST, second_engine.url], image="gcop-sandbox:only-on-the-second-engine", pool_size=1) as fleet:
            outcome = fleet.run_pytest({"solution.py": GOOD, "test_solution.py": TESTS}, timeout=10)
            first, other = fleet.stats()
        assert outcome.all_passed
        assert first.state is HostState.NO_IMAGE and "docker save" in first.last_error and other.validations == 1
        assert copy_image(docker.from_env(), second, DEFAULT_IMAGE) == 0.0  # same id there: nothing to copy
    finally:
        second.images.remove("gcop-sandbox:only-on-the-second-engine")


@pytest.mark.docker
def test_cli_lists_the_engines_and_copies_the_image(second_engine, capsys):
    from gcop_env.cli.sandbox import sandbox_cli

    assert sandbox_cli(["hosts", FIRST, second_engine.url]) == 0
    table = capsys.readouterr().out
    assert f"| {FIRST} | up |" in table and f"| {second_engine.url} | up |" in table
    assert sandbox_cli(["hosts", FIRST, DEAD]) == 1
    assert f"| {DEAD} | down |" in capsys.readouterr().out
    assert sandbox_cli(["copy-image", "--to", second_engine.url]) == 0
    assert "(same id)" in capsys.readouterr().out
