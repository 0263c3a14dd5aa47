"""Sandboxes across several Docker engines: one warm pool per engine, least-loaded routing, failover.

:class:`DockerFleet` is a :class:`~gcop_env.sandbox.base.Sandbox` over one
:class:`~gcop_env.sandbox.docker_backend.DockerSandbox` pool per engine. Engines are named the way
``DOCKER_HOST`` names them: ``unix:///var/run/docker.sock``, ``tcp://host:2376`` (TLS from
``DOCKER_TLS_VERIFY``/``DOCKER_CERT_PATH``, or per host with :class:`DockerHost`), ``ssh://user@host``.

Why failover cannot score anything wrong: a verdict is read only from the worker's report, so a
run that lost its engine has *no* verdict, only an infra outcome. Running the tests again is
harmless (a run has no side effects outside its wiped container), so such a run is sent to another
engine; when no engine is left it comes back as infra, which the validators never score as a fail.

Routing: each run goes to the healthy engine with the lowest ``in_flight / capacity`` (capacity:
the pool size, by default the engine's CPU count from ``docker info``). An engine that does not
answer a ping after a failed run is taken out of rotation (logged); a background thread pings it
with back-off and puts it back (logged) once it answers *and* has the sandbox image, current.
"""

from __future__ import annotations

import enum
import os
import socket
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from gcop_env.sandbox.base import DEFAULT_TIMEOUT_S, PytestOutcome, RunRequest, Sandbox, log
from gcop_env.sandbox.docker_backend import DockerSandbox
from gcop_env.sandbox.image import DEFAULT_IMAGE, RECIPE_LABEL, image_is_current, image_recipe, recipe_hash

#: Comma-separated engine URLs; when set, ``make_sandbox("docker"|"auto")`` spreads runs across them.
HOSTS_ENV = "GCOP_DOCKER_HOSTS"
_SCHEMES = ("unix://", "tcp://", "ssh://", "npipe://")


@dataclass(frozen=True)
class DockerHost:
    """One Docker engine, named as ``DOCKER_HOST`` names it.

    Args:
        url: ``unix:///path.sock``, ``tcp://host:port`` or ``ssh://user@host[:port]``.
        pool_size: warm containers on this engine (default: the fleet's ``pool_size``, else the
            engine's CPU count).
        tls: for ``tcp://``: ``True`` verifies the engine with the certificates in ``cert_path``
            (``ca.pem``, ``cert.pem``, ``key.pem``, as ``docker --tlsverify``); ``None`` follows
            ``DOCKER_TLS_VERIFY``/``DOCKER_CERT_PATH`` like the docker CLI; ``False`` is plain HTTP.
        cert_path: directory of the TLS files (default ``$DOCKER_CERT_PATH`` or ``~/.docker``).
    """

    url: str
    pool_size: int | None = None
    tls: bool | None = None
    cert_path: str | None = None

    def __post_init__(self) -> None:
        if not self.url.startswith(_SCHEMES):
            raise ValueError(
                f"Docker host {self.url!r} is not a DOCKER_HOST-style URL; use unix:///var/run/docker.sock, "
                "tcp://HOST:2376 (TLS) or ssh://USER@HOST"
            )
        if self.pool_size is not None and int(self.pool_size) < 1:
            raise ValueError(f"pool_size of {self.url} must be at least 1, got {self.pool_size!r}")

    def client(self, timeout: float) -> Any:
        """A ``docker.DockerClient`` for this engine (connects to read the API version: raises if down)."""
        import docker

        kwargs: dict[str, Any] = {"base_url": self.url, "timeout": timeout}
        tls = _tls_config(self) if self.url.startswith("tcp://") else None
        if self.url.startswith("ssh://"):
            try:
                import paramiko  # noqa: F401
            except ImportError:  # the ssh binary does the same job (and reads ~/.ssh/config)
                kwargs["use_ssh_client"] = True
        if tls is None:
            return docker.DockerClient(**kwargs)
        # requests lets $REQUESTS_CA_BUNDLE / $CURL_CA_BUNDLE replace the session's CA file on every
        # call, so the engine's own CA would be ignored (and verification fail) wherever they are
        # set: pin it, then ask the engine for its API version as docker.from_env() would.
        client = docker.DockerClient(**kwargs, tls=tls, version=docker.constants.MINIMUM_DOCKER_API_VERSION)
        api = client.api
        merge = api.merge_environment_settings

        def engine_ca(url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> dict[str, Any]:
            settings = merge(url, proxies, stream, verify, cert)
            settings["verify"] = api.verify
            return settings

        api.merge_environment_settings = engine_ca  # type: ignore[method-assign]
        api._version = api._retrieve_server_version()
        return client


def _tls_config(host: DockerHost) -> Any:
    import docker

    verify = host.tls
    if verify is None:
        flag = os.environ.get("DOCKER_TLS_VERIFY")
        verify = bool(flag) or bool(os.environ.get("DOCKER_CERT_PATH"))
    if not verify:
        return None
    cert_path = host.cert_path or os.environ.get("DOCKER_CERT_PATH") or os.path.join(os.path.expanduser("~"), ".docker")
    files = {name: os.path.join(cert_path, name) for name in ("ca.pem", "cert.pem", "key.pem")}
    missing = [path for path in files.values() if not os.path.exists(path)]
    if missing:
        raise ValueError(f"TLS for {host.url} needs {', '.join(missing)} (set cert_path or DOCKER_CERT_PATH)")
    return docker.tls.TLSConfig(
        client_cert=(files["cert.pem"], files["key.pem"]), ca_cert=files["ca.pem"], verify=True
    )


def parse_hosts(hosts: str | DockerHost | Mapping[str, Any] | Iterable[str | DockerHost | Mapping[str, Any]]) -> list[DockerHost]:
    """Engines from a comma-separated string, a list of URLs / dicts / :class:`DockerHost`."""
    if isinstance(hosts, (str, DockerHost, Mapping)):
        hosts = [hosts] if not isinstance(hosts, str) else [h for h in hosts.split(",")]
    parsed: list[DockerHost] = []
    for host in hosts:
        if isinstance(host, DockerHost):
            parsed.append(host)
        elif isinstance(host, Mapping):
            parsed.append(DockerHost(**host))
        elif isinstance(host, str) and host.strip():
            parsed.append(DockerHost(host.strip()))
    urls = [h.url for h in parsed]
    if not parsed:
        raise ValueError("no Docker host given; list engine URLs, e.g. unix:///var/run/docker.sock,tcp://gpu2:2376")
    if len(set(urls)) != len(urls):
        raise ValueError(f"a Docker host is listed twice: {urls}")
    return parsed


def hosts_from_env() -> list[DockerHost] | None:
    """The engines in ``$GCOP_DOCKER_HOSTS``, or None when it is unset or empty."""
    value = os.environ.get(HOSTS_ENV, "").strip()
    return parse_hosts(value) if value else None


# ------------------------------------------------------------------------------ the image


def image_problem(client: Any, image: str, url: str, source: str | None = None) -> str | None:
    """Why ``image`` cannot be used on this engine (missing, or built from another recipe), or None."""
    recipe = image_recipe(image, client)
    copy = f"`docker save {image} | docker -H {url} load`, or `gcop sandbox copy-image --to {url}`"
    if source:
        copy += f" --from {source}"
    if recipe is None:
        return f"the Docker engine at {url} has no image {image}; copy it there: {copy}"
    if recipe and not image_is_current(image, client):
        return (
            f"image {image} on {url} was built from another recipe ({RECIPE_LABEL}={recipe}, this version's is "
            f"{recipe_hash()}): it may lack packages the tasks import, so its verdicts could differ from the other "
            f"engines'; copy the current one there: {copy}"
        )
    return None


def copy_image(source: Any, target: Any, image: str = DEFAULT_IMAGE) -> float:
    """Stream ``image`` from one engine to another (``docker save | docker load``); returns seconds.

    The tarball is streamed, never held in memory or on disk. Does nothing (0.0) when the target
    already has the same image id.
    """
    started = time.monotonic()
    wanted = source.images.get(image)
    try:
        if target.images.get(image).id == wanted.id:
            return 0.0
    except Exception:
        pass
    for _progress in target.api.load_image(source.api.get_image(image, chunk_size=1 << 20)):
        pass
    if target.images.get(image).id != wanted.id:
        raise RuntimeError(f"copying {image} did not produce the same image id on the target engine")
    return time.monotonic() - started


# ------------------------------------------------------------------------------ the fleet


class _HostPool(DockerSandbox):
    """One engine's pool. After a worker dies it asks the fleet's short-timeout ping (not a 60 s API
    call), and it can abort its runs in flight when the fleet finds the engine gone."""

    def __init__(self, engine_ok: Any, **options: Any) -> None:
        super().__init__(**options)
        self._fleet_engine_ok = engine_ok
        self._busy: set[Any] = set()
        self._busy_lock = threading.Lock()

    def _engine_ok(self) -> bool:
        return bool(self._fleet_engine_ok())

    def _acquire(self) -> Any:
        worker = super()._acquire()
        with self._busy_lock:
            self._busy.add(worker)
        return worker

    def _release(self, worker: Any, healthy: bool) -> None:
        with self._busy_lock:
            self._busy.discard(worker)
        super()._release(worker, healthy)

    def abort(self) -> None:
        """End the runs in flight (their engine is gone): each sees its worker die and gets no verdict."""
        with self._busy_lock:
            busy = list(self._busy)
        for worker in busy:
            try:
                worker._sock.shutdown(socket.SHUT_RDWR)
            except Exception:  # already closed
                pass


class HostState(str, enum.Enum):
    """Whether an engine takes runs."""

    UP = "up"
    DOWN = "down"  # does not answer; pinged with back-off
    NO_IMAGE = "no_image"  # answers but lacks the (current) image; re-checked with back-off


@dataclass(frozen=True)
class HostStats:
    """What one engine did (a snapshot from :meth:`DockerFleet.stats`)."""

    url: str
    state: HostState
    capacity: int
    in_flight: int
    validations: int  # runs that returned an outcome from this engine (verdicts and timeouts)
    failures: int  # infra outcomes this engine returned while it still answered
    moved: int  # runs lost on this engine (it stopped answering) and sent to another
    removals: int
    readds: int
    last_error: str = ""


class _Host:
    """One engine's pool and counters; guarded by the fleet's lock."""

    def __init__(self, spec: DockerHost) -> None:
        self.spec = spec
        self.url = spec.url
        self.state = HostState.DOWN
        self.pool: Any = None  # a DockerSandbox while UP
        self.probe: Any = None  # a client with a short timeout, for pings
        self.capacity = spec.pool_size or 1
        self.in_flight = 0
        self.validations = 0
        self.failures = 0
        self.moved = 0
        self.removals = 0
        self.readds = 0
        self.last_error = ""
        self.backoff = 0.0
        self.next_check = 0.0
        self.ever_up = False
        self.checked = False  # its first check is logged whatever it finds
        self.image_id = ""  # of the sandbox image there, when last admitted
        self.missed = 0  # heartbeats in a row that got no answer
        self.next_heartbeat = 0.0
        self.checking = threading.Lock()  # one check of a host at a time (checker thread vs on demand)

    @property
    def load(self) -> float:
        return self.in_flight / self.capacity


class DockerFleet(Sandbox):
    """Runs tests on several Docker engines (see the module docstring).

    Args:
        hosts: engine URLs (comma-separated string or list), dicts or :class:`DockerHost`\\ s.
        image: the sandbox image; every engine needs it (a copy: :func:`copy_image`).
        pool_size: warm containers per engine (default: each engine's CPU count); a
            :class:`DockerHost` may set its own.
        ping_timeout: seconds a health ping may take before the engine counts as not answering.
        api_timeout: seconds for other engine calls (create, start, remove).
        check_interval: first back-off between pings of a removed engine (doubles up to ``max_backoff``).
        max_backoff: longest wait between pings of a removed engine.
        heartbeat: seconds between pings of the engines in rotation; two missed in a row remove the
            engine and abort its runs in flight (which go elsewhere). Catches an engine that hangs
            rather than closing its connections. 0 turns it off.
        **sandbox_options: passed to each engine's :class:`DockerSandbox` (``memory_mb``, ``cpus``, ...).
    """

    kind = "docker"

    def __init__(
        self,
        hosts: Any,
        image: str = DEFAULT_IMAGE,
        pool_size: int | None = None,
        ping_timeout: float = 3.0,
        api_timeout: float = 60.0,
        check_interval: float = 0.5,
        max_backoff: float = 15.0,
        heartbeat: float = 2.0,
        **sandbox_options: Any,
    ) -> None:
        specs = parse_hosts(hosts)
        self.image = image
        self.pool_size = pool_size
        self.ping_timeout = float(ping_timeout)
        self.api_timeout = float(api_timeout)
        self.check_interval = float(check_interval)
        self.max_backoff = float(max_backoff)
        self.heartbeat = float(heartbeat)
        self.sandbox_options = dict(sandbox_options)
        self.versions: dict[str, str] = {}
        self._hosts = [_Host(spec) for spec in specs]
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        for host in self._hosts:
            self._check(host)
        if not any(h.state is HostState.UP for h in self._hosts):
            log.warning("no Docker host is usable yet: %s", "; ".join(f"{h.url}: {h.last_error}" for h in self._hosts))
        self._checker = threading.Thread(target=self._check_loop, name="gcop-docker-hosts", daemon=True)
        self._checker.start()

    # -- health ---------------------------------------------------------------------------------

    def _answers(self, host: _Host) -> bool:
        try:
            if host.probe is None:
                host.probe = host.spec.client(self.ping_timeout)
            host.probe.ping()
            return True
        except Exception as exc:
            host.probe = None  # a restarted engine may speak another API version: reconnect
            host.last_error = f"does not answer ({exc.__class__.__name__}: {exc})"
            return False

    def _check(self, host: _Host) -> bool:
        """Ping a host that is out of rotation; admit it when it answers and has the current image."""
        with host.checking:
            if host.state is HostState.UP or self._closed:
                return host.state is HostState.UP
            return self._admit(host)

    def _admit(self, host: _Host) -> bool:
        was = host.state
        if not self._answers(host):
            return self._stay_out(host, HostState.DOWN, was)
        try:
            client = host.spec.client(self.api_timeout)
            problem = image_problem(client, self.image, host.url, source=self._image_source(host))
            if problem:
                host.last_error = problem
                return self._stay_out(host, HostState.NO_IMAGE, was)
            self._compare_image(host, client.images.get(self.image).id)
            capacity = host.spec.pool_size or self.pool_size or int(client.info().get("NCPU") or 1)
            pool = _HostPool(
                image=self.image, pool_size=capacity, client=client, engine_ok=lambda: self._answers(host), **self.sandbox_options
            )
        except Exception as exc:
            host.last_error = f"{exc.__class__.__name__}: {exc}"
            return self._stay_out(host, HostState.DOWN, was)
        old = None
        with self._lock:
            if self._closed:
                pool.close()
                return False
            old, host.pool = host.pool, pool
            host.capacity = pool.pool_size
            host.state = HostState.UP
            host.missed = 0
            host.backoff = 0.0
            host.last_error = ""
            if host.ever_up:
                host.readds += 1
                log.warning("Docker host %s is back: added to the sandbox pool (capacity %d)", host.url, host.capacity)
            else:
                log.info("Docker host %s: capacity %d", host.url, host.capacity)
            host.ever_up = host.checked = True
        if old is not None:
            old.close()
        return True

    def _compare_image(self, host: _Host, image_id: str) -> None:
        """Warn when engines hold different images under one tag: a verdict could depend on the engine."""
        host.image_id = image_id
        for other in self._hosts:
            if other is not host and other.image_id and other.image_id != image_id:
                log.warning(
                    "image %s differs between %s (%s) and %s (%s): verdicts may depend on the engine; copy one to "
                    "the other (gcop sandbox copy-image --from %s --to %s)",
                    self.image, other.url, other.image_id[:19], host.url, image_id[:19], other.url, host.url,
                )

    def _stay_out(self, host: _Host, state: HostState, was: HostState) -> bool:
        with self._lock:
            host.state = state
            host.backoff = min(self.max_backoff, max(self.check_interval, host.backoff * 2))
            host.next_check = time.monotonic() + host.backoff
        first, host.checked = not host.checked, True
        if was is not state or first:
            log.warning("Docker host %s is out of the sandbox pool: %s", host.url, host.last_error)
        return False

    def _remove(self, host: _Host, why: str) -> None:
        """Take a host that stopped answering out of rotation (once, however many runs saw it)."""
        with self._lock:
            if host.state is not HostState.UP:
                return
            host.state = HostState.DOWN
            host.removals += 1
            host.last_error = why
            host.backoff = self.check_interval
            host.next_check = time.monotonic() + host.backoff
            pool, host.pool = host.pool, None
        log.warning("Docker host %s stopped answering (%s): removed; its runs go to the other hosts", host.url, why)
        if pool is not None:  # its containers are gone with the engine; do not wait on it
            pool.abort()
            threading.Thread(target=pool.close, name="gcop-docker-host-close", daemon=True).start()
        self._wake.set()

    def _image_source(self, host: _Host) -> str | None:
        others = [h.url for h in self._hosts if h is not host and h.state is HostState.UP]
        return others[0] if others else None

    def _check_loop(self) -> None:
        while not self._closed:
            self._wake.wait(self.check_interval)
            self._wake.clear()
            for host in self._hosts:
                if self._closed:
                    return
                now = time.monotonic()
                if host.state is not HostState.UP:
                    if host.next_check <= now:
                        self._check(host)
                elif self.heartbeat > 0 and host.next_heartbeat <= now:
                    host.next_heartbeat = now + self.heartbeat
                    host.missed = 0 if self._answers(host) else host.missed + 1
                    if host.missed >= 2:
                        self._remove(host, f"missed two heartbeats: {host.last_error}")

    def check_hosts(self) -> list[HostStats]:
        """Ping every host out of rotation now (not waiting for its back-off); returns :meth:`stats`."""
        for host in self._hosts:
            if host.state is not HostState.UP:
                self._check(host)
        return self.stats()

    # -- routing --------------------------------------------------------------------------------

    def _pick(self, tried: set[str]) -> _Host | None:
        with self._lock:
            candidates = [h for h in self._hosts if h.state is HostState.UP and h.url not in tried]
            if not candidates:
                return None
            # Least loaded; on a tie, the one that has done least (spreads a sequential caller too).
            host = min(candidates, key=lambda h: (h.load, h.validations + h.failures))
            host.in_flight += 1
            return host

    def run_pytest(
        self,
        files: Mapping[str, str],
        timeout: float = DEFAULT_TIMEOUT_S,
        test_file: str = "test_solution.py",
    ) -> PytestOutcome:
        RunRequest(files, timeout, test_file).message()  # a bad file name is the caller's bug: raise now
        if self._closed:
            return PytestOutcome.infra("the sandbox is closed", self.kind)
        tried: set[str] = set()
        lost: list[str] = []
        checked = False
        while True:
            host = self._pick(tried)
            if host is None and not checked:  # on demand: a host may have come back since
                checked = True
                self.check_hosts()
                host = self._pick(tried)
            if host is None:
                why = "; ".join(lost + [f"{h.url}: {h.last_error or h.state.value}" for h in self._hosts if h.url not in tried])
                return PytestOutcome.infra(f"no Docker host left to run on ({why})", self.kind)
            pool = host.pool
            try:
                if pool is None:
                    outcome = PytestOutcome.infra("the host was removed", self.kind)
                else:
                    outcome = pool.run_pytest(files, timeout, test_file)
            except Exception as exc:  # the transport broke in a way the pool did not expect: no verdict
                outcome = PytestOutcome.infra(f"{exc.__class__.__name__}: {exc}", self.kind)
            finally:
                with self._lock:
                    host.in_flight -= 1
            if self._engine_lost(outcome) and not self._answers(host):
                with self._lock:
                    host.moved += 1
                self._remove(host, host.last_error)
                tried.add(host.url)
                why_lost = outcome.infra_error or outcome.signal or "timed out"
                log.info("a run on %s got no verdict (%s): running it on another host", host.url, why_lost)
                lost.append(f"{host.url}: lost during the run ({why_lost})")
                continue
            with self._lock:
                if outcome.infra_error and not outcome.missing_modules:
                    host.failures += 1
                else:
                    host.validations += 1
                if pool is not None and pool.versions:
                    self.versions = dict(pool.versions)
            return replace(outcome, backend=self.kind, host=host.url)

    @staticmethod
    def _engine_lost(outcome: PytestOutcome) -> bool:
        """Could this outcome be the engine's doing rather than the run's? (then the host is pinged)."""
        if outcome.missing_modules:
            return False
        return bool(outcome.infra_error) or (outcome.timed_out and not outcome.complete and not outcome.tests) or (
            outcome.signal is not None and outcome.signal.startswith("the sandbox died")
        )

    # -- reporting and lifetime -----------------------------------------------------------------

    def stats(self) -> list[HostStats]:
        """Per host: state, capacity, in-flight runs, validations, failures, moved runs, removals, re-adds."""
        with self._lock:
            return [
                HostStats(h.url, h.state, h.capacity, h.in_flight, h.validations, h.failures, h.moved, h.removals, h.readds, h.last_error)
                for h in self._hosts
            ]

    @property
    def hosts(self) -> Sequence[str]:
        return [h.url for h in self._hosts]

    def warm(self) -> None:
        for host in self._hosts:
            pool = host.pool
            if host.state is HostState.UP and pool is not None:
                try:
                    pool.warm()
                except Exception as exc:  # a host dying while warming is found by the next run
                    log.info("warming %s failed: %s", host.url, exc)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pools = [h.pool for h in self._hosts if h.pool is not None]
            for host in self._hosts:
                host.pool = None
        self._wake.set()
        for pool in pools:
            pool.close()
