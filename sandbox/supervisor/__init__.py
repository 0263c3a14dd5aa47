"""The supervisor: the sandbox's own process (trusted). It forks every run and reads every verdict.

It never runs the candidate's code nor the tests' code: it writes the files, forks the run's
processes, enforces limits and the timeout, kills what a run leaves behind, and turns the
runner's report into the result it sends the host.
"""
