"""The candidate's side of the sandbox: code that runs in a process the candidate's code controls.

Nothing here decides a verdict under trusted isolation: the candidate process answers the
judge's calls with data (:mod:`gcop_env.sandbox.candidate.server`). Under the in-process
fallback (:mod:`gcop_env.sandbox.candidate.in_process`) the tests run here too, watched by the
runtime monitor (:mod:`gcop_env.sandbox.candidate.monitor`).
"""
