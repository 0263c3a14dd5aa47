"""The sandbox's entry point (trusted): the supervisor's start-up, then its serve loop.

Started once per sandbox (inside a Docker container as PID 1, or as a host subprocess for the
process backend) by the bootstrap of :mod:`gcop_env.sandbox.bundle`, with its configuration (JSON)
as the first argument. It moves the host channel off fds 0/1 (so no run inherits it), empties the
capability bounding set of every process to come (:func:`~gcop_env.sandbox.supervisor.spawn.lock_down`),
forks the candidate fork server while still small (:mod:`gcop_env.sandbox.candidate.server`),
imports what every run needs, and serves runs from inside one pytest session
(:mod:`gcop_env.sandbox.supervisor.session`).
"""

import os
import signal
import sys
import traceback

# Only what the candidate fork server needs is imported before it forks (the judge's and the
# supervisor's own modules after): a module that registers a fork handler (threading does) would
# run it in every candidate process, copying pages each time.
from gcop_env.sandbox.candidate.server import start as start_candidate_server
from gcop_env.sandbox.supervisor.spawn import RunLimits, lock_down
from gcop_env.sandbox.wire.framing import send_json

MESSAGE_LIMIT = 4000  # characters of a start-up failure's traceback


def main(config):
    # Move the protocol channel off fds 0/1 so that nothing a run inherits reaches it.
    proto_in = os.dup(0)
    proto_out = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if config.get("mode") != "container":
        try:  # PR_SET_CHILD_SUBREAPER: orphans of a run are reparented to us
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)
        except Exception:
            pass
    os.environ.clear()
    os.environ.update(config.get("env", {}))
    sys.dont_write_bytecode = True
    try:
        trusted_state = "off: no second user configured"
        if config.get("users") and os.geteuid() != 0:
            trusted_state = "off: the sandbox's process cannot change user (not root)"
            config = dict(config, users=None)
        if config.get("users") and config.get("mode") != "container":
            os.chmod(config["base"], 0o1733)  # each run's users make their own dirs here
        lock_down()
        limits = RunLimits(config)
        candidate_server = None
        if config.get("users"):
            candidate_server = start_candidate_server(limits, [proto_in, proto_out])
            trusted_state = "on"
        from gcop_env.sandbox.supervisor.server import ForkServer
        from gcop_env.sandbox.supervisor.warmup import preload

        preload()
        server = ForkServer(config, limits, proto_in, proto_out, candidate_server, trusted_state)
    except Exception:
        send_json(proto_out, {"op": "fatal", "error": traceback.format_exc()[-MESSAGE_LIMIT:]})
        return 1
    if config.get("session", True) and server.serve_in_session():
        return 0
    server.session = None
    server.serve()
    return 0
