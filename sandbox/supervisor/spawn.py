"""What a run's forked process does before its own job (trusted code, in the run's new process).

Between the fork and the first line of test or candidate code: its own session and signals, only
the descriptors it is given, its output on the run's pipe, resource limits, the drop to the run's
user (no capability survives it), its work dir, a scrubbed environment. Nothing here runs code
of the run, so what it sets is in place before anything could object.
"""

import _signal
import gc
import os
import signal
import sys
import time


def enter_run(server, workdir, timeout, out_w, close_fds, user, path_fixes, session, forked, oom_score=b"1000"):
    """Set up this freshly forked process for a run; returns ``(profile, capture)``.

    ``user``: (uid, gid) to drop to, or None to keep the server's; ``path_fixes``: see
    :meth:`~gcop_env.sandbox.supervisor.server.ForkServer.package_path_fixes`; ``session``: the
    fork server's pytest session (its capture manager is stopped here), or None; ``forked``: the
    time of the fork when profiling, else None.
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
    os.setsid()
    signal.set_wakeup_fd(-1)
    _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)  # (signal.signal's enum conversions cost page copies)
    for fd in close_fds:
        os.close(fd)
    os.dup2(out_w, 1)
    os.dup2(out_w, 2)
    os.close(out_w)
    _signal.signal(_signal.SIGINT, _signal.default_int_handler)
    _signal.signal(_signal.SIGTERM, _signal.SIG_DFL)
    if oom_score is not None:
        try:  # the kernel's OOM killer should pick the candidate, never the server
            fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
            try:
                os.write(fd, oom_score)
            finally:
                os.close(fd)
        except OSError:
            pass
    import resource

    limits = server.config.get("rlimits", {})
    cpu = int(timeout) + 2
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    for name, value in limits.items():
        resource.setrlimit(getattr(resource, name), (int(value), int(value)))
    if server.nproc is not None:
        resource.setrlimit(resource.RLIMIT_NPROC, (server.nproc, server.nproc))
    if user:
        os.setgroups([])
        os.setgid(user[1])
        os.setuid(user[0])
        if server.import_path is not None:
            sys.path[:] = server.import_path
            # Packages imported before the drop (encodings, email...) find their submodules
            # through __path__, not sys.path: point those at the open directories too.
            for paths, opened in path_fixes:
                paths[:] = opened
            sys.path_importer_cache.clear()
    os.chdir(workdir)
    env = dict(server.config.get("env", {}))
    env["HOME"] = workdir
    if not server.in_container:
        env["TMPDIR"] = workdir
    os.environ.clear()
    os.environ.update(env)
    import tempfile

    # What tempfile.gettempdir() finds with this environment: $TMPDIR (the work dir) for the
    # process backend, else the directory the server found with the same one (the first writable
    # of /tmp, /var/tmp...), without a write test per run.
    tempfile.tempdir = env.get("TMPDIR") or server.default_tempdir
    sys.dont_write_bytecode = True
    return profile, capture
