"""Run untrusted code's tests: one interface (:class:`Sandbox`), two backends.

``docker`` (real isolation, a warm pool of locked-down containers) or ``process`` (rlimits and a
scrubbed environment only; weaker). Choose with :func:`make_sandbox`::

    from gcop_env.sandbox import make_sandbox
    with make_sandbox("auto") as sandbox:
        outcome = sandbox.run_pytest({"solution.py": code, "test_solution.py": tests}, timeout=10)
        outcome.all_passed, outcome.passed, outcome.collected
"""

from __future__ import annotations

import inspect
from typing import Any

from gcop_env.sandbox.base import PytestOutcome, Sandbox, SandboxError, TestOutcome, log
from gcop_env.sandbox.image import DEFAULT_IMAGE

SANDBOX_KINDS = ("docker", "process", "auto")

__all__ = ["PytestOutcome", "Sandbox", "SandboxError", "TestOutcome", "SANDBOX_KINDS", "make_sandbox", "DEFAULT_IMAGE"]


def make_sandbox(kind: str = "auto", **options: Any) -> Sandbox:
    """A sandbox of ``kind``: ``"docker"``, ``"process"`` or ``"auto"``.

    ``auto`` takes Docker when an engine answers and has the image, else the process backend,
    and logs which it chose (a warning when it falls back: the process backend isolates less);
    ``sandbox.kind`` says it too. ``options`` go to the backend's constructor
    (:class:`~gcop_env.sandbox.docker_backend.DockerSandbox` or
    :class:`~gcop_env.sandbox.process_backend.ProcessSandbox`); with ``auto``, options the chosen
    backend does not take are ignored.

    Several Docker engines: ``hosts=[url, ...]`` (or ``$GCOP_DOCKER_HOSTS``, comma-separated URLs)
    gives a :class:`~gcop_env.sandbox.hosts.DockerFleet` that spreads runs across them.
    """
    from gcop_env.sandbox.docker_backend import DockerSandbox, docker_available
    from gcop_env.sandbox.process_backend import ProcessSandbox

    if kind not in SANDBOX_KINDS:
        raise ValueError(f"unknown sandbox kind {kind!r}; choose one of {', '.join(SANDBOX_KINDS)}")
    if kind in ("docker", "auto"):
        from gcop_env.sandbox.hosts import hosts_from_env

        hosts = options.pop("hosts", None) or hosts_from_env()
        if hosts:
            return _make_fleet(kind, hosts, options)
    if kind == "docker":
        return DockerSandbox(**options)
    if kind == "process":
        return ProcessSandbox(**options)
    ok, why = docker_available(options.get("image", DEFAULT_IMAGE))
    backend = DockerSandbox if ok else ProcessSandbox
    accepted = inspect.signature(backend.__init__).parameters
    chosen = backend(**{k: v for k, v in options.items() if k in accepted})
    if ok:
        log.info("sandbox=auto: using Docker (image %s)", options.get("image", DEFAULT_IMAGE))
    else:
        log.warning("sandbox=auto: using the process backend, which isolates less than Docker: %s", why)
    return chosen


def _make_fleet(kind: str, hosts: Any, options: dict[str, Any]) -> Sandbox:
    """``docker``: the fleet whatever its state (runs are infra until a host is usable); ``auto``:
    the process backend when no listed host is usable now."""
    from gcop_env.sandbox.hosts import DockerFleet, HostState
    from gcop_env.sandbox.process_backend import ProcessSandbox

    fleet = DockerFleet(hosts, **options)
    if kind == "docker" or any(s.state is HostState.UP for s in fleet.stats()):
        return fleet
    why = "; ".join(f"{s.url}: {s.last_error}" for s in fleet.stats())
    fleet.close()
    log.warning("sandbox=auto: using the process backend, which isolates less than Docker: no Docker host is usable (%s)", why)
    accepted = inspect.signature(ProcessSandbox.__init__).parameters
    return ProcessSandbox(**{k: v for k, v in options.items() if k in accepted})
