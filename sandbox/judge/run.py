"""The judge's job in a trusted run (trusted: the judge's own process, the candidate cannot reach it).

After :func:`gcop_env.sandbox.supervisor.spawn.enter_run` (the judge's user, its work dir with
the test file), this process writes the report's nonce, puts the solution's stand-in in front of
every import of the run's modules (:mod:`gcop_env.sandbox.judge.remote`) and runs the tests with
the plain runner or with pytest. Every assertion is decided here; the report goes to a pipe the
candidate's process never had.
"""

import os
import sys
import time

from gcop_env.sandbox.judge.plain_runner import plain_session
from gcop_env.sandbox.judge.remote import Channel, SolutionFinder
from gcop_env.sandbox.judge.reporter import make_emitter, make_reporter
from gcop_env.sandbox.supervisor.session import RunInThisChild
from gcop_env.sandbox.wire.framing import write_all


def run_judge(server, workdir, args, rep_w, channel_fd, test_file, modules, star_excluded, session, profile, capture,
              plain, codes, forked):
    """The judge's job; never returns (exits, or unwinds into the session's collection)."""
    import pytest

    nonce = os.urandom(16).hex()
    write_all(rep_w, nonce.encode("ascii") + b"\n")
    emit = make_emitter(rep_w, nonce)
    del nonce

    def harness_failed(why):
        emit({"ev": "harness", "why": str(why)[:500]})
        os._exit(70)

    channel = Channel(channel_fd, modules, test_file[:-3], harness_failed, star_excluded)
    sys.meta_path.insert(0, SolutionFinder(channel))
    if profile is not None:
        channel.profile = profile
        profile["setup"] = time.monotonic() - forked - profile["fork"]
        profile["t_main"] = time.monotonic()
    if plain is not None:
        os._exit(plain_session(session, server.pyfunc_call, plain, codes, workdir, test_file, emit, None, capture,
                               profile, server.pads, None, guard=channel))
    reporter = make_reporter(emit, None, guard=channel)
    if profile is not None:
        reporter.profile = profile
    if session is not None:  # go back up into the session's collection (see gcop_env.sandbox.supervisor.session)
        raise RunInThisChild(reporter, None, capture)
    code = pytest.main(args, plugins=[reporter])
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        pass
    os._exit(int(code))
