"""The judge's side: reading test files and running tests (trusted wherever the candidate cannot reach).

Under trusted isolation these modules run in the judge, a process of its own user that the
candidate's process cannot read, write, signal or trace; the solution is a proxy there. The plain
runner and the reporter also serve the in-process fallback, where the candidate shares the process.
"""
