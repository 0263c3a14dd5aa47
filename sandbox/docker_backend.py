"""The Docker sandbox: a warm pool of locked-down containers, one fork server in each.

Every container: no network, read-only root filesystem, tmpfs work dirs wiped after every run,
user ``nobody``, all capabilities dropped, ``no-new-privileges``, pids/memory/CPU limits, no log
driver. Its PID 1 is the supervisor (:mod:`gcop_env.sandbox.supervisor`), spoken to over the
container's attached stdin/stdout (no ``docker exec`` per run): PID 1 of a PID namespace cannot
be killed from inside it, and after every run it ``kill(-1, SIGKILL)``\\ s every other process in
the container, however it detached itself. A container whose run timed out, left processes
behind, could not be wiped or died is removed and replaced, never reused.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from gcop_env.sandbox.base import (
    DEFAULT_MEMORY_MB,
    DEFAULT_OUTPUT_LIMIT,
    DEFAULT_PIDS_LIMIT,
    GRACE_S,
    SANDBOX_ENV,
    RUN_USERS,
    PooledSandbox,
    RunRequest,
    SandboxError,
    WorkerChannel,
    log,
    WorkerTimeout,
)
from gcop_env.sandbox.bundle import bundle_frame, sandbox_command
from gcop_env.sandbox.image import DEFAULT_IMAGE, image_is_current, image_recipe

LABEL = "org.gcop.sandbox"
_STDOUT = 1


class _ContainerWorker:
    """One container running the fork server, and the attached socket to it."""

    def __init__(self, client: Any, image: str, create: dict[str, Any], host: dict[str, Any], start_timeout: float) -> None:
        self.client = client
        # The low-level API: only it sets StdinOnce (detach=False + stdin_open), which makes the
        # worker see EOF and exit when this process goes away.
        reply = client.api.create_container(image, host_config=client.api.create_host_config(**host), **create)
        self.container = client.containers.get(reply["Id"])
        self.versions: dict[str, str] = {}
        self._frame_left = 0
        self._frame_stream = 0
        try:
            # Attach before start so that nothing the worker says is missed.
            self._io = client.api.attach_socket(self.container.id, params={"stdin": 1, "stdout": 1, "stream": 1})
            self._sock: socket.socket = getattr(self._io, "_sock", self._io)
            self.container.start()
            self._sock.sendall(bundle_frame())
            self.channel = WorkerChannel(self._read, self._sock.sendall)
            hello = self.channel.receive(start_timeout)
        except Exception:
            self.close()
            raise
        if hello.get("op") != "ready":
            self.close()
            raise SandboxError(f"the sandbox worker failed to start in {image}: {hello.get('error', hello)}")
        self.versions = {"python": hello.get("python"), "pytest": hello.get("pytest"), "plain_runner": hello.get("plain_runner"),
                         "isolation": hello.get("isolation"), "filesystem": hello.get("filesystem")}

    def _recv(self, n: int, deadline: float) -> bytes:
        wait = deadline - time.monotonic()
        if wait <= 0:
            raise WorkerTimeout("the sandbox container did not answer in time")
        self._sock.settimeout(wait)
        try:
            return self._sock.recv(n)
        except socket.timeout as exc:
            raise WorkerTimeout("the sandbox container did not answer in time") from exc

    def _read(self, n: int, deadline: float) -> bytes:
        """Bytes of the worker's stdout, out of Docker's multiplexed attach stream."""
        while True:
            if self._frame_left == 0:
                header = b""
                while len(header) < 8:  # [stream, 0, 0, 0, size (4 bytes, big-endian)]
                    chunk = self._recv(8 - len(header), deadline)
                    if not chunk:
                        return b""
                    header += chunk
                self._frame_stream = header[0]
                self._frame_left = int.from_bytes(header[4:8], "big")
                continue
            data = self._recv(min(n, self._frame_left), deadline)
            if not data:
                return b""
            self._frame_left -= len(data)
            if self._frame_stream == _STDOUT:
                return data

    def run(self, request: RunRequest) -> dict[str, Any]:
        self.channel.send(request.message())
        return self.channel.receive(request.timeout + GRACE_S)

    def close(self) -> None:
        for closer in (getattr(self, "_sock", None), getattr(self, "_io", None)):
            try:
                if closer is not None:
                    closer.close()
            except Exception:
                pass
        try:
            self.container.remove(force=True)
        except Exception:  # already gone (auto_remove) or the engine is down
            pass


class DockerSandbox(PooledSandbox):
    """Runs tests in a pool of locked-down containers (see the module docstring).

    Args:
        image: an image with ``python3`` and pytest (build it with ``gcop sandbox build-image``).
        pool_size: containers kept warm; runs beyond it wait (default: the CPU count).
        reuse: False starts a fresh container for every run (the slow "cold" mode).
        memory_mb: address-space limit of a run; the container gets 256 MB more for its tmpfs
            and the worker.
        cpus: CPUs per container.
        pids_limit: processes per container.
        tmpfs_mb: size of each of the container's writable dirs (``/work``, ``/tmp``).
        output_limit: bytes of stdout+stderr kept per run.
        client: a ``docker.DockerClient`` (default: ``docker.from_env()``).
        runner: "auto" (default) runs test files made of plain test functions with the worker's
            plain runner and the rest with pytest; "pytest" runs every file with pytest (the same
            verdicts, about twice the CPU; see ``sandbox/judge/plain_runner.py``).
    """

    kind = "docker"

    def __init__(
        self,
        image: str = DEFAULT_IMAGE,
        pool_size: int | None = None,
        reuse: bool = True,
        memory_mb: int = DEFAULT_MEMORY_MB,
        cpus: float = 1.0,
        pids_limit: int = DEFAULT_PIDS_LIMIT,
        tmpfs_mb: int = 64,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
        start_timeout: float = 60.0,
        client: Any = None,
        runner: str = "auto",
        isolation: str = "auto",
    ) -> None:
        super().__init__(pool_size, output_limit, reuse=reuse, runner=runner, isolation=isolation)
        import docker

        self.image = image
        self.start_timeout = start_timeout
        self.client = client or docker.from_env()
        recipe = image_recipe(image, self.client)
        if recipe is not None and not image_is_current(image, self.client):
            log.warning(
                "sandbox image %s was built from another recipe (%s); it may lack packages the tasks import "
                "(rebuild: scripts/setup_docker.sh)", image, recipe or "unlabelled",
            )
        config = {
            "mode": "container",
            "base": "/work",
            "scratch": ["/work", "/tmp", "/dev/shm", "/dev/mqueue"],
            "env": dict(SANDBOX_ENV),
            "rlimits": {"RLIMIT_AS": memory_mb << 20, "RLIMIT_FSIZE": 16 << 20, "RLIMIT_NOFILE": 256},
            "users": RUN_USERS,
            "judge_dir": "/judge",
        }
        tmpfs = f"rw,nosuid,nodev,noexec,size={int(tmpfs_mb)}m,mode=1777"
        container_mb = 2 * memory_mb + 3 * tmpfs_mb + 256  # a run's candidate and judge, the servers, the tmpfs
        self.create_kwargs: dict[str, Any] = {
            "command": sandbox_command("python3", config),
            # The supervisor starts as root with only the capabilities below; every run's process
            # drops to the judge's or the candidate's user (and so to no capability) before any
            # test or candidate code (see docs/sandbox.md).
            "user": "0:0",
            "working_dir": "/",  # not /work: Docker would make the tmpfs 0755 root
            "environment": dict(SANDBOX_ENV),
            "stdin_open": True,
            "detach": False,
            "tty": False,
            "network_disabled": True,
            "labels": {LABEL: "1"},
        }
        self.host_kwargs: dict[str, Any] = {
            "network_mode": "none",
            "read_only": True,
            # /judge: the judge server's own (the candidate's user cannot enter it, nor take its name).
            "tmpfs": {"/work": tmpfs, "/tmp": tmpfs, "/judge": "rw,nosuid,nodev,noexec,size=%dm,mode=0700,uid=%d,gid=%d" % (
                int(tmpfs_mb), RUN_USERS["judge"][0], RUN_USERS["judge"][1])},
            "shm_size": "16m",
            "cap_drop": ["ALL"],
            # change user (runs), signal other users' processes (clean-up), remove their files
            # (wipe), and empty the bounding set (lock_down) — the supervisor's own, none a run's.
            "cap_add": ["SETUID", "SETGID", "KILL", "DAC_OVERRIDE", "FOWNER", "SETPCAP"],
            "security_opt": ["no-new-privileges"],
            "pids_limit": int(pids_limit),
            "mem_limit": f"{container_mb}m",
            "memswap_limit": f"{container_mb}m",
            "nano_cpus": int(cpus * 1e9),
            "ulimits": [docker.types.Ulimit(name="core", soft=0, hard=0)],
            "log_config": docker.types.LogConfig(type="none"),
            "auto_remove": True,
        }

    def _start_worker(self) -> _ContainerWorker:
        return _ContainerWorker(self.client, self.image, self.create_kwargs, self.host_kwargs, self.start_timeout)

    def _discard(self, worker: _ContainerWorker) -> None:  # type: ignore[override]
        if self.reuse:  # removing takes ~0.1 s: do not make the caller wait for it
            threading.Thread(target=worker.close, name="gcop-sandbox-remove", daemon=True).start()
        else:
            worker.close()

    def _engine_ok(self) -> bool:
        try:
            self.client.ping()
            return True
        except Exception:
            return False


def docker_available(image: str = DEFAULT_IMAGE) -> tuple[bool, str]:
    """(True, "") when a Docker engine answers and has ``image``; else (False, why)."""
    try:
        import docker

        client = docker.from_env(timeout=10)
        client.ping()
    except Exception as exc:
        return False, f"no Docker engine answers ({exc.__class__.__name__}: {exc})"
    try:
        client.images.get(image)
    except Exception:
        return False, f"the Docker engine has no image {image} (build it: `gcop sandbox build-image`)"
    return True, ""


def remove_stale_containers(client: Any = None) -> int:
    """Remove sandbox containers left by processes that died without closing their pool."""
    import docker

    client = client or docker.from_env()
    removed = 0
    for container in client.containers.list(all=True, filters={"label": LABEL}):
        try:
            container.remove(force=True)
            removed += 1
        except Exception:
            pass
    return removed
