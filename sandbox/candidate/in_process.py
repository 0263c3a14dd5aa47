"""The in-process fallback: the tests and the candidate's code in one process (the candidate's side).

For test files that trusted isolation cannot run (see :mod:`gcop_env.sandbox.judge.plan`): after
:func:`gcop_env.sandbox.supervisor.spawn.enter_run`, this process draws the run's nonce, installs
the runtime monitor (:mod:`gcop_env.sandbox.candidate.monitor`) before any candidate code, and
runs the tests with the plain runner or with pytest, reporting through the nonce-signed emitter.
The candidate's code shares this process, so the report is only as safe as the monitor makes it.
"""

import os
import sys
import time

from gcop_env.sandbox.candidate.monitor import Monitor
from gcop_env.sandbox.judge.plain_runner import plain_session
from gcop_env.sandbox.judge.reporter import make_emitter, make_reporter
from gcop_env.sandbox.supervisor.session import RunInThisChild, profile_rewriting
from gcop_env.sandbox.wire.framing import write_all


def run_in_process(server, workdir, args, rep_w, test_file, files, session, profile, capture, plain, codes, forked):
    """The in-process run's job; never returns (exits, or unwinds into the session's collection)."""
    import pytest

    # The nonce is drawn here, after the fork, and sent first: the server's memory (which the
    # child inherits) never holds it, and no candidate code has run yet.
    nonce = os.urandom(16).hex()
    write_all(rep_w, nonce.encode("ascii") + b"\n")
    monitor = None
    if server.config.get("monitor", True):
        monitor = Monitor(workdir, os.path.join(workdir, test_file), [n for n in files if n != test_file])
        monitor.install()
    emit = make_emitter(rep_w, nonce)
    del nonce
    if profile is not None:
        profile["setup"] = time.monotonic() - forked - profile["fork"]
        profile["t_main"] = time.monotonic()
    if plain is not None:
        os._exit(plain_session(session, server.pyfunc_call, plain, codes, workdir, test_file, emit, monitor, capture,
                               profile, server.pads, server.pristine))
    reporter = make_reporter(emit, monitor)
    if profile is not None:
        patch = profile_rewriting(profile)
        if monitor is not None and patch is not None:
            monitor.harness_patches.append(patch)
        reporter.profile = profile
    if session is not None:  # go back up into the session's collection (see gcop_env.sandbox.supervisor.session)
        raise RunInThisChild(reporter, monitor, capture)
    code = pytest.main(args, plugins=[reporter])
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        pass
    os._exit(int(code))
