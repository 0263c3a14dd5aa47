"""What crosses a process boundary inside the sandbox: frames and data (both sides of every channel).

The supervisor, the judge (the trusted test process) and the candidate's process all import these
modules; each copy serves only its own process, so the judge's copy is the trusted decoder of
what the candidate sends. Stdlib only: shipped into the sandbox as source (see ``sandbox/bundle.py``).
"""
