"""What a run's forked process does before its own job (trusted code, in the run's new process).

Between the fork and the first line of test or candidate code: its own session and signals, only
the descriptors it is given, its output on the run's pipe, resource limits, the drop to the run's
user (no capability survives it, and the process can no longer be read or traced by another
user), its work dir and files, a scrubbed environment. Nothing here runs code of the run, so what
it sets is in place before anything could object. Also the limits every run shares
(:class:`RunLimits`, computed once by the supervisor) and the capability drop of the sandbox's
own processes (:func:`drop_capabilities`).
"""

import _signal
import gc
import os
import signal
import sys
import time

from gcop_env.sandbox.supervisor.procs import count_processes, remap

JUDGE_USER = (65533, 65533)  # the judge's uid and gid (no name needed)
CANDIDATE_USER = (65534, 65534)  # nobody: the candidate's processes (and the in-process fallback)

_PR_SET_NO_NEW_PRIVS = 38
_PR_CAPBSET_DROP = 24
_PR_SET_DUMPABLE = 4
_CAPABILITIES = {"CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_DAC_OVERRIDE": 1,
                 "CAP_FOWNER": 3, "CAP_CHOWN": 0}


class RunLimits:
    """What every run's processes get, computed once before the supervisor forks anything.

    ``judge_user`` and ``candidate_user``: (uid, gid) of the two sides (None when this process
    cannot change user: then there is no trusted isolation); ``import_path``: for a host
    interpreter whose files the run's user may not reach, the import path as directories opened
    now (``/proc/self/fd/N``); ``nproc``: per user, the process limit of a run.
    """

    def __init__(self, config):
        self.config = config
        self.in_container = config.get("mode") == "container"
        users = config.get("users")
        self.judge_user = tuple(users["judge"]) if users else None
        self.candidate_user = tuple(users["candidate"]) if users else None
        self.import_path = None
        self.path_fds = []  # the descriptors of import_path's directories (a run must keep them open)
        self.path_map = []
        self._path_fixes = None
        self._path_fixes_for = 0
        if self.candidate_user and not self.in_container:
            # The interpreter's files may sit where nobody cannot reach (e.g. under /root). Open
            # the import path's directories now, as root; after the drop, imports go through
            # /proc/self/fd/N, which checks only the directory's own (world-readable) mode.
            self.import_path = []
            for entry in sys.path:
                try:
                    fd = os.open(entry, os.O_RDONLY | os.O_DIRECTORY)
                except OSError:
                    continue
                self.import_path.append("/proc/self/fd/%d" % fd)
                self.path_fds.append(fd)
                self.path_map.append((entry.rstrip("/") + "/", "/proc/self/fd/%d/" % fd))
        # The host's files a candidate's process may reach (the process backend; a container has only
        # the image's): see gcop_env.sandbox.supervisor.landlock.
        self.confinement = None
        if self.in_container:
            self.filesystem = "the container's own (the image's files and the run's dir)"
        elif config.get("confine", True):
            from gcop_env.sandbox.supervisor.landlock import Confinement

            self.confinement = Confinement()
            self.filesystem = self.confinement.state
            if not self.confinement.active:
                self.confinement = None
        else:
            self.filesystem = "host files NOT confined: turned off (confine=False)"
        self.nproc = {}
        if not self.in_container:  # (a container has its pids limit)
            for user in {self.judge_user, self.candidate_user, None}:
                uid = user[0] if user else os.getuid()
                self.nproc[user] = count_processes(uid) + int(config.get("pids_limit", 128))
        # A change of effective user sets a process's "dumpable" flag to this (0: nobody but root
        # may read its memory or trace it), so enter_run's own prctl is needed only otherwise.
        try:
            with open("/proc/sys/fs/suid_dumpable") as handle:
                self.drop_clears_dumpable = handle.read().strip() == "0"
        except OSError:
            self.drop_clears_dumpable = False
        import resource

        # (resource, limit) for every run's process: no core dumps, and the configured limits.
        self.rlimits = [(resource.RLIMIT_CORE, 0)] + [
            (getattr(resource, name), int(value)) for name, value in config.get("rlimits", {}).items()]
        self.default_tempdir = None
        if self.in_container:  # the server runs with a run's environment (but HOME): what a run finds
            import tempfile

            tempfile.tempdir = None
            self.default_tempdir = tempfile.gettempdir()

    def path_fixes(self):
        """(a package's ``__path__`` list, its /proc/self/fd form) for the imported packages, computed
        once here so that a child's privilege drop only assigns them."""
        if self.import_path is None:
            return ()
        if self._path_fixes is None or len(sys.modules) != self._path_fixes_for:
            ordered = sorted(self.path_map, key=lambda pair: -len(pair[0]))
            fixes = []
            for module in list(sys.modules.values()):
                paths = getattr(module, "__path__", None)
                if isinstance(paths, list):
                    opened = [remap(p, ordered) for p in paths]
                    if opened != paths:
                        fixes.append((paths, opened))
            self._path_fixes, self._path_fixes_for = fixes, len(sys.modules)
        return self._path_fixes


_LIBC = []


def _libc():
    """libc through ctypes (loaded once per server, before its forks)."""
    if not _LIBC:
        import ctypes

        _LIBC.append(ctypes.CDLL(None, use_errno=True))
    return _LIBC[0]


def lock_down():
    """For the supervisor at start: no process of the sandbox may gain privileges by ``execve``
    (no-new-privileges), and none of them may ever hold a capability outside the ones this
    process has now (the bounding set is emptied; this process keeps what it holds). Best effort:
    without the right to change the bounding set it stays as it is."""
    try:
        libc = _libc()
        libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        last = 40
        try:
            with open("/proc/sys/kernel/cap_last_cap") as handle:
                last = int(handle.read())
        except (OSError, ValueError):
            pass
        for cap in range(last + 1):
            libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)
    except Exception:
        pass


def drop_capabilities(keep=()):
    """Keep only the capabilities named in ``keep`` (effective and permitted) in this process."""
    try:
        import ctypes

        class Header(ctypes.Structure):
            _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

        class Data(ctypes.Structure):
            _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

        mask = 0
        for name in keep:
            mask |= 1 << _CAPABILITIES[name]
        header = Header(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3: two 32-bit words
        data = (Data * 2)()
        libc = _libc()
        if libc.capget(ctypes.byref(header), data) != 0:
            return
        data[0].effective &= mask
        data[0].permitted &= mask
        data[0].inheritable = 0
        data[1].effective = data[1].permitted = data[1].inheritable = 0
        libc.capset(ctypes.byref(header), data)
    except Exception:
        pass


def _set_oom_score(oom_score):
    try:  # the kernel's OOM killer should pick the candidate, never the server
        fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
        try:
            os.write(fd, oom_score)
        finally:
            os.close(fd)
    except OSError:
        pass


def prepare(limits, workdir, oom_score):
    """What :func:`enter_run` sets that a server can set once for all its runs' processes (they
    inherit it): the environment and temp dir of a run in ``workdir``, and ``oom_score``."""
    if oom_score is not None:
        _set_oom_score(oom_score)
    env = dict(limits.config.get("env", {}))
    env["HOME"] = workdir
    if not limits.in_container:
        env["TMPDIR"] = workdir
    os.environ.clear()
    os.environ.update(env)
    import tempfile

    # What tempfile.gettempdir() finds with this environment: $TMPDIR (the work dir) for the
    # process backend, else the directory the server found with the same one (the first writable
    # of /tmp, /var/tmp...), without a write test per run.
    tempfile.tempdir = env.get("TMPDIR") or limits.default_tempdir


def enter_run(limits, workdir, timeout, out_w, close_fds, user, path_fixes, session, forked, files=None, err_w=None,
              oom_score=b"1000", prepared=False, confine=False):
    """Set up this freshly forked process for a run; returns ``(profile, capture)``.

    ``timeout``: the run's, for its CPU limit (None: none); ``user``: (uid, gid) to drop to, or
    None to keep the server's; ``path_fixes``: see
    :meth:`RunLimits.path_fixes`; ``session``: the fork server's pytest session (its capture
    manager is stopped here), or None; ``forked``: the time of the fork when profiling, else
    None; ``files``: {name: text} written into ``workdir``, which this process creates (0700,
    its user's) after the drop; ``err_w``: stderr's descriptor when it is not ``out_w``'s;
    ``prepared``: the server has done :func:`prepare` for this work dir; ``confine``: this process
    will run candidate code: it restricts itself to its work dir and the files it needs (Landlock,
    where ``limits.confinement`` is on; see :mod:`gcop_env.sandbox.supervisor.landlock`).
    """
    profile = None
    if forked is not None:
        profile = {"fork": time.monotonic() - forked}
    capture = session.config.pluginmanager.getplugin("capturemanager") if session is not None else None
    if capture is not None:
        # No run may see another's output: the fork server stopped its session's capturing
        # before serving (then this does nothing), and the run starts its own, pointed at this
        # run's pipe below (see gcop_env.sandbox.supervisor.session).
        capture.stop_global_capturing()
    # What the server made since its own freeze (plans, requests) is the server's too: out of the
    # child's collections, and out of the monitor's list of the run's new objects.
    gc.freeze()
    # Its own process group (a signal to "its group" reaches only the run's processes). Not its own
    # session: where the kernel groups scheduling by session (autogroup), a new session costs
    # milliseconds, and a run has no terminal to detach from.
    os.setpgid(0, 0)
    signal.set_wakeup_fd(-1)
    _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)  # (signal.signal's enum conversions cost page copies)
    for fd in close_fds:
        try:
            os.close(fd)
        except OSError:  # (already closed)
            pass
    os.dup2(out_w, 1)
    os.dup2(out_w if err_w is None else err_w, 2)
    os.close(out_w)
    if err_w is not None:
        os.close(err_w)
    _signal.signal(_signal.SIGINT, _signal.default_int_handler)
    _signal.signal(_signal.SIGTERM, _signal.SIG_DFL)
    if not prepared and oom_score is not None:
        _set_oom_score(oom_score)
    import resource

    if timeout is not None:  # (None: a server of runs; the supervisor's clock stops a run that takes too long)
        cpu = int(timeout) + 2
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    for which, value in limits.rlimits:
        resource.setrlimit(which, (value, value))
    nproc = limits.nproc.get(user)
    if nproc is not None:
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    was = os.geteuid()
    if user:
        os.setgroups([])
        os.setresgid(user[1], user[1], user[1])
        os.setresuid(user[0], user[0], user[0])
        if os.getuid() != user[0] or os.geteuid() != user[0]:
            raise OSError("the run's process did not drop to uid %d" % user[0])
        if limits.import_path is not None:
            sys.path[:] = limits.import_path
            # Packages imported before the drop (encodings, email...) find their submodules
            # through __path__, not sys.path: point those at the open directories too.
            for paths, opened in path_fixes:
                paths[:] = opened
            sys.path_importer_cache.clear()
    if not (user and user[0] != was and limits.drop_clears_dumpable):
        try:  # no other process of this user may read this one's memory or trace it
            _libc().prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
        except Exception:
            pass
    if files is not None:
        os.mkdir(workdir, 0o700)
        for name, text in files.items():
            fd = os.open(workdir + "/" + name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            try:
                data = text.encode("utf-8")
                while data:
                    data = data[os.write(fd, data):]
            finally:
                os.close(fd)
    if limits.confinement is not None:
        if confine:
            limits.confinement.apply(workdir)  # (raises where the kernel refuses: never unconfined by surprise)
        else:
            limits.confinement.close()
    os.chdir(workdir)
    if not prepared:
        prepare(limits, workdir, None)
    sys.dont_write_bytecode = True
    return profile, capture
