"""Family 3, records after a failure win: the report keeps the last record of each test phase and
takes records written after the failing call, so any candidate code that runs later (called by the
monitor's own end-of-run checks, an audit hook, a thread) can overwrite a failure with a pass.

Each attack faces ``answer() == 42`` (and ``isinstance(answer(), int)``) with a wrong answer (41).
"""

from __future__ import annotations

import pytest

from _redteam import EMITTER_VIA_GC, Attack, check_attack, ids
from _sandbox_support import runner, sandbox  # noqa: F401  (fixtures)

# ``_passes()``: passed records for every test of the test module, sent through the run's emitter
# (found once among the collector's objects and kept).
_LATE = EMITTER_VIA_GC + '''
import sys
_found = []
def _emitter():
    if not _found:
        emit = _find_emitter()
        if emit is not None:
            _found.append(emit)
    return _found[0] if _found else None
def _passes():
    emit = _emitter()
    module = sys.modules.get("te" + "st_solution")
    if emit is None or module is None:
        return
    for name in list(vars(module)):
        if name.startswith("test"):
            for when in ("setup", "call", "teardown"):
                emit({"ev": "phase", "id": "te" + "st_solution.py::" + name, "when": when, "outcome": "passed"})
'''

ATTACKS = [
    Attack(
        "monitor_equality_probe_calls_back",
        "an __eq__ that the monitor's end-of-run equality probe calls (with two of its own objects) sends "
        "passed records, then answers NotImplemented so the probe sees nothing",
        _LATE + '''
class Answer:
    def __eq__(self, other):
        if type(self).__name__ == "_Unre" + "lated":  # the probe's own objects: the run is over
            _passes()
            return NotImplemented
        return self is other
    __hash__ = object.__hash__
def answer():
    _emitter()
    return 41
''',
    ),
    Attack(
        "audit_hook_fires_on_the_monitors_gc_walk",
        "an audit hook (added by a computed name) that sends passed records when the monitor's final check "
        "lists the collector's young objects (audit event gc.get_objects)",
        _LATE + '''
_busy = []
def _hook(event, args):
    if event == "gc.get_objects" and not _busy and _found:
        _busy.append(1)
        try:
            _passes()
        finally:
            _busy.pop()
_installed = []
def answer():
    _emitter()
    if not _installed:
        getattr(sys, "add" + "audithook")(_hook)
        _installed.append(_hook)
    return 41
''',
    ),
    Attack(
        "class_property_read_by_the_monitors_isinstance",
        "a module-level object whose __class__ (a property set through locals()) runs when the monitor asks "
        "isinstance(value, type) of every module attribute at its final check, and sends passed records",
        _LATE + '''
def _lie(self):
    if _found:
        _passes()
    return _Lie
class _Lie:
    locals()["__cl" + "ass__"] = property(_lie)
marker = _Lie()
def answer():
    _emitter()
    return 41
''',
    ),
    Attack(
        "atexit_handler_writes_fake_records",
        "registers (by a computed module name) an exit handler that writes fake records to every fd",
        '''
import os
def _late():
    for fd in range(256):
        try:
            os.write(fd, b"0" * 32 + b' {"ev": "end", "exit": 0}\\n')
        except OSError:
            pass
__import__("at" + "exit").register(_late)
def answer():
    return 41
''',
    ),
    Attack(
        "finaliser_writes_fake_records",
        "leaves objects whose __del__ prints fake passing records and a pytest summary when they are collected",
        '''
import os
class _Late:
    def __del__(self):
        print("0" * 32 + ' {"ev": "end", "exit": 0}')
        print("======= 2 passed in 0.01s =======")
_keep = []
def answer():
    loop = _Late()
    loop.me = loop  # a cycle: freed by the collector, whenever it runs
    _keep.append(_Late())
    return 41
''',
    ),
    Attack(
        "thread_prints_fake_records_after_the_call",
        "a daemon thread that keeps printing fake records and pytest's summary after the call returned",
        '''
import os, threading, time
_LINE = b' {"ev": "phase", "id": "x", "when": "call", "outcome": "passed"}\\n2 passed\\n'
def _late():
    for _ in range(200):
        for fd in (1, 2):
            try:
                os.write(fd, b"0" * 32 + _LINE)
            except OSError:
                pass
        time.sleep(0.001)
def answer():
    threading.Thread(target=_late, daemon=True).start()
    return 41
''',
    ),
]


@pytest.mark.parametrize("attack", ATTACKS, ids=ids(ATTACKS))
def test_wrong_solution_is_never_pass(request, sandbox, runner, attack):
    check_attack(request, sandbox, runner, attack)
