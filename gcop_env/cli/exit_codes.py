"""The exit statuses of every ``gcop`` command, in one place.

==========================  ===  ==========================================================
name                        #    when
==========================  ===  ==========================================================
``EXIT_OK``                 0    the work is done
``EXIT_FAILED``             1    it ran, and something is not right (a spec not ready, rows
                                 that could not be graded, an image that fails its check)
``EXIT_USAGE``              2    bad input: nothing was started or paid for
``EXIT_UNFINISHED``         2    ``gcop curate``: some problems are left for a re-run
``EXIT_INFRA``              3    some rows hit infrastructure errors (API, sandbox): left out of
                                 the accuracy, never counted as wrong; re-run to retry them
``EXIT_BUDGET``             4    the budget ran out: finished work is saved, re-run with a larger
                                 one to resume
``EXIT_INTERRUPTED``        130  stopped by Ctrl-C / SIGTERM (the shell's code): finished work is
                                 saved, re-run to resume
==========================  ===  ==========================================================
"""

from __future__ import annotations

import os
import sys
import threading

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNFINISHED = 2
EXIT_INFRA = 3
EXIT_BUDGET = 4
EXIT_INTERRUPTED = 130


def exit_interrupted() -> int:
    """The exit status of an interrupted command, leaving at once if worker threads still run.

    Abandoned worker threads (a request stuck in a retry backoff) would hold the interpreter
    open at exit; everything worth keeping is already saved (rows are fsynced as they finish,
    the response cache commits per call), so the process ends here with status 130.
    """
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if others:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)
    return EXIT_INTERRUPTED
