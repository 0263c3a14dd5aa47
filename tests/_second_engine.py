"""A second Docker engine on this machine, for the multi-host sandbox tests.

It runs beside the first one (never touched) with its own socket, data root, exec root and pid
file, no bridge and no iptables rules (sandbox containers have no network anyway). Its data root
is a fixed path, so a rerun finds the image already there (same id: no copy). Only one test
session uses it at a time (a file lock); whatever this module started, it stops.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

ROOT = Path(os.environ.get("GCOP_DOCKER2_ROOT", "/var/lib/gcop-docker2"))
EXEC_ROOT = Path("/var/run/gcop-docker2")  # short: containerd's socket path lives under it
SOCKET = Path("/var/run/gcop-docker2.sock")
PIDFILE = Path("/var/run/gcop-docker2.pid")
LOG = Path("/tmp/gcop-docker2.log")
URL = f"unix://{SOCKET}"
TLS_DIR = ROOT.parent / (ROOT.name + "-tls")  # ca.pem, cert.pem, key.pem (client) and the server's pair


def unavailable() -> str | None:
    """Why a second engine cannot be started here, or None."""
    if shutil.which("dockerd") is None:
        return "dockerd is not installed (scripts/setup_docker.sh installs it)"
    if os.geteuid() != 0:
        return "starting a second dockerd needs root"
    return None


class SecondEngine:
    """Start, SIGKILL, restart and stop one extra dockerd (and its containerd)."""

    def __init__(self) -> None:
        ROOT.mkdir(parents=True, exist_ok=True)
        self._lock = open(ROOT.parent / (ROOT.name + ".lock"), "w")
        waited = time.monotonic()
        while True:  # another session's tests of this engine: wait for them to finish (they take < 2 min)
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() - waited > 600:
                    self._lock.close()
                    raise RuntimeError(f"another test session has held {self._lock.name} for 10 minutes") from None
                time.sleep(1)
        self.process: subprocess.Popen | None = None
        self.tls_url: str | None = None  # tcp://127.0.0.1:PORT, TLS-verified both ways (when openssl is here)
        self._stop_leftover()
        if shutil.which("openssl"):
            _make_certificates(TLS_DIR)
            self.tls_url = f"tcp://127.0.0.1:{_free_port()}"

    def start(self, timeout: float = 60.0) -> float:
        """Start dockerd and wait until it answers; returns the seconds it took."""
        import docker

        started = time.monotonic()
        self._stop_leftover()  # after a kill: what the dead engine left would slow its restart by 10 s
        log = open(LOG, "ab")
        tls = []
        if self.tls_url:
            tls = [
                "-H", self.tls_url, "--tlsverify", f"--tlscacert={TLS_DIR / 'ca.pem'}",
                f"--tlscert={TLS_DIR / 'server-cert.pem'}", f"--tlskey={TLS_DIR / 'server-key.pem'}",
            ]
        self.process = subprocess.Popen(
            [
                "dockerd", "-H", URL, *tls, "--data-root", str(ROOT), "--exec-root", str(EXEC_ROOT),
                "--pidfile", str(PIDFILE), "--bridge=none", "--iptables=false", "--ip6tables=false",
            ],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        log.close()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"the second dockerd exited ({self.process.returncode}); see {LOG}")
            try:
                docker.DockerClient(base_url=URL, timeout=5).ping()
                return time.monotonic() - started
            except Exception:
                time.sleep(0.2)
        raise RuntimeError(f"the second dockerd did not answer in {timeout:.0f}s; see {LOG}")

    def kill(self) -> None:
        """SIGKILL dockerd, as a crash would (its containerd and containers are left to the next start)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def freeze(self, frozen: bool = True) -> None:
        """SIGSTOP (or SIGCONT) dockerd: its connections stay open but nothing answers, as in a partition."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGSTOP if frozen else signal.SIGCONT)

    def stop(self) -> None:
        """Stop dockerd (SIGTERM: it stops its containers), then its containerd; release the lock."""
        try:
            self.freeze(False)
            if self.process is not None and self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(30)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(10)
            self._stop_leftover()
        finally:
            self._lock.close()

    def _stop_leftover(self) -> None:
        """What an earlier run of this engine left (killed mid-run): stop it, so a start is clean and quick.

        Its dockerd and containerd (by their pid files), then the container shims of its containerd and
        the sandbox processes under them (a restarted dockerd would wait 10 s for each to obey SIGTERM,
        which a fork server that is PID 1 ignores). Only processes whose command line names this
        engine's exec root or socket are touched.
        """
        for pidfile in (PIDFILE, EXEC_ROOT / "containerd" / "containerd.pid"):
            pid = _read_pid(pidfile)
            if pid is not None and _alive(pid) and _ours(pid):
                _terminate(pid)
            if pid is not None and not _alive(pid):
                pidfile.unlink(missing_ok=True)  # a stale pid makes dockerd wait for a containerd that is gone
        shims = [pid for pid in _pids() if _ours(pid) and b"containerd-shim" in _cmdline(pid)]
        children = [pid for pid in _pids() if _parent(pid) in shims]
        for pid in children + shims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _make_certificates(directory: Path) -> None:
    """A throw-away CA, a server certificate for 127.0.0.1 and a client certificate (as Docker's TLS guide)."""
    if all((directory / name).exists() for name in ("ca.pem", "cert.pem", "key.pem", "server-cert.pem", "server-key.pem")):
        return
    directory.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj", "/CN=gcop-test-ca",
            "-keyout", "ca-key.pem", "-out", "ca.pem")
    (directory / "server.ext").write_text("subjectAltName = IP:127.0.0.1\nextendedKeyUsage = serverAuth\n")
    (directory / "client.ext").write_text("extendedKeyUsage = clientAuth\n")
    for name, ext in (("server", "server.ext"), ("client", "client.ext")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}-key.pem", "-out", f"{name}.csr")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
                "-days", "3650", "-extfile", ext, "-out", f"{name}-cert.pem")
    (directory / "client-cert.pem").rename(directory / "cert.pem")
    (directory / "client-key.pem").rename(directory / "key.pem")


def _terminate(pid: int) -> None:
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        if not _alive(pid):
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return b""


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    try:
        return status.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _ours(pid: int) -> bool:
    """Is ``pid`` one of this engine's processes (its command line names our exec root or socket)?"""
    cmdline = _cmdline(pid)
    return str(EXEC_ROOT).encode() in cmdline or str(SOCKET).encode() in cmdline
