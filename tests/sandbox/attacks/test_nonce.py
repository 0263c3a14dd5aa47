"""Family 2, the nonce is reachable: the per-run secret that signs every report record lives in the
candidate's own process (in the emitter's closure, on the stack, in the collector's object lists, in
its memory), so a candidate that finds it writes a complete passing report and ends the process
before the harness writes anything else.

Each attack faces ``answer() == 42`` (and ``isinstance(answer(), int)``) with a wrong answer (41) and
forges inside its first call (after the harness's ``collected`` record).
"""

from __future__ import annotations

import pytest

from _redteam import EMITTER_VIA_GC, MEMORY, REPORT_FD, Attack, check_attack, ids
from _sandbox_support import runner, sandbox  # noqa: F401  (fixtures)

# Writes a passing report (setup/call/teardown passed for every test of the test module, then the
# end record) through ``send(event)`` and ends the process before the harness says anything else.
_FORGE = '''
import json, os, sys
def _tests():
    module = sys.modules.get("te" + "st_solution")
    return ["te" + "st_solution.py::" + name for name in list(vars(module)) if name.startswith("test")]
def _forge(send):
    for test in _tests():
        for when in ("setup", "call", "teardown"):
            send({"ev": "phase", "id": test, "when": when, "outcome": "passed"})
    send({"ev": "end", "exit": 0})
    os._exit(0)
def _raw(fd, prefix):
    return lambda event: os.write(fd, prefix + json.dumps(event).encode() + b"\\n")
''' + REPORT_FD

# The nonce in a process's memory (``/proc/PID/mem``).
_MEMORY = MEMORY + '''
import re, struct
_TEXT = re.compile(rb"[0-9a-f]{32} \\x00")
def _nonces(pid="self"):
    """Live bytes objects of 33 bytes holding 32 hex digits and a space, in ``pid``'s memory: the
    emitter's prefix, or the server's copy of it (freed copies of older runs' nonces have a free-list
    pointer where a live object has its reference count)."""
    found = set()
    kind, size = struct.pack("<Q", id(bytes)), struct.pack("<q", 33)
    for _, chunk in _regions(pid):
        for match in _TEXT.finditer(chunk):
            at = match.start()
            refs, = struct.unpack("<Q", chunk[at - 32:at - 24] or b"\\xff" * 8)
            if chunk[at - 24:at - 16] == kind and chunk[at - 16:at - 8] == size and 0 < refs < 1 << 20:
                if chunk[at:at + 32] != b"0" * 32:
                    found.add(chunk[at:at + 32])
    return sorted(found)
'''

# The emitter found among the harness's locals on the stack, or through pytest's plugin manager
# (the reporter plugin's methods close over it) when the pytest runner holds it in no frame.
_EMITTER_FROM_FRAMES = '''
def _emitter_in(frames):
    for frame in frames:
        local = getattr(frame, "f_" + "locals")
        emit = local.get("emit")
        if callable(emit) and getattr(emit, "__closure__", None):
            return emit
        for value in list(local.values()):
            config = getattr(value, "config", None)
            manager = getattr(config, "plugin" + "manager", None)
            slot = manager.get_plugin("gcop-reporter") if manager is not None else None
            reporter = getattr(slot, "reporter", None)
            method = getattr(reporter, "pytest_sessionfinish", None)
            for cell in getattr(getattr(method, "__func__", None), "__closure__", None) or ():
                if getattr(cell.cell_contents, "__name__", "") == "emit":
                    return cell.cell_contents
'''

ATTACKS = [
    Attack(
        "emitter_closure_via_gc",
        "finds the emit closure among the garbage collector's objects and sends a passing report through it",
        _FORGE + EMITTER_VIA_GC + '''
def answer():
    emit = _find_emitter()
    if emit is not None:
        _forge(emit)
    return 41
''',
    ),
    Attack(
        "emitter_from_stack_frames",
        "walks the stack (sys._getframe, f_back by computed names) to the harness frame that holds emit",
        _FORGE + _EMITTER_FROM_FRAMES + '''
def _stack():
    frame = getattr(sys, "_get" + "frame")()
    while frame is not None:
        yield frame
        frame = getattr(frame, "f_" + "back")
def answer():
    emit = _emitter_in(_stack())
    if emit is not None:
        _forge(emit)
    return 41
''',
    ),
    Attack(
        "emitter_via_current_frames_and_walk_stack",
        "reaches the same frames through sys._current_frames() and traceback.walk_stack (no frame attribute named)",
        _FORGE + _EMITTER_FROM_FRAMES + '''
import threading, traceback
def answer():
    top = sys._current_frames()[threading.get_ident()]
    emit = _emitter_in(frame for frame, _ in traceback.walk_stack(top))
    if emit is not None:
        _forge(emit)
    return 41
''',
    ),
    Attack(
        "prefix_bytes_in_gc_cells",
        "finds the nonce prefix among closure cells (gc.get_objects) and the report fd in /proc/self/fd, "
        "then writes raw signed lines",
        _FORGE + '''
import gc, re
def answer():
    fd = _report_fd()
    for obj in getattr(gc, "get_" + "objects")():
        if type(obj).__name__ != "cell":
            continue
        try:
            value = obj.cell_contents
        except ValueError:
            continue
        if type(value) is bytes and re.fullmatch(rb"[0-9a-f]{32} ", value) and value[:32] != b"0" * 32:
            _forge(_raw(fd, value))
    return 41
''',
    ),
    Attack(
        "nonce_from_proc_self_mem",
        "scans its own memory (/proc/self/mem, readable unless the run changed uid) for a signed record "
        "and writes raw lines with that nonce",
        _FORGE + _MEMORY + '''
def answer():
    fd = _report_fd()
    try:
        nonces = _nonces()
    except OSError:
        return 41
    if len(nonces) == 1:
        _forge(_raw(fd, nonces[0] + b" "))
    return 41
''',
        timeout=10.0,
    ),
    Attack(
        "nonce_from_the_servers_memory",
        "reads the fork server's memory (/proc/<ppid>/mem: the same uid in Docker) for its live copy of the "
        "run's nonce, which it keeps once it has read the report's first line, and writes raw signed lines",
        _FORGE + _MEMORY + '''
import time
def answer():
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:  # until the server has read the nonce line
        try:
            nonces = _nonces(os.getppid())
        except OSError:
            return 41
        if len(nonces) == 1:
            _forge(_raw(_report_fd(), nonces[0] + b" "))
        time.sleep(0.02)
    return 41
''',
        timeout=15.0,
    ),
]


@pytest.mark.parametrize("attack", ATTACKS, ids=ids(ATTACKS))
def test_wrong_solution_is_never_pass(request, sandbox, runner, attack):
    check_attack(request, sandbox, runner, attack)
