"""Reference counts for objects several holders share (a core, a scorer and its sandboxes).

Copies of an env (``sibling()``, ``copy.copy``, ``copy.deepcopy``, unpickling) may share some
parts with the original and own others. Each copy takes a :class:`Holding` on the parts it
uses; ``release()`` says which of them it was the last holder of, and only those are closed.
So closing one of several OpenEnv sessions, SkyRL trajectories or vector sub-envs never tears
down the core or the sandbox pool under the others, and the last close still releases them.

The count is kept per object identity in one process-wide table (weak references: an object
nobody holds any more leaves the table). A ``Holding`` does not travel: a pickled or copied
holder takes its own with :func:`hold` when it is rebuilt.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from typing import Any

_lock = threading.RLock()  # re-entrant: a weak-reference callback may run inside a locked section
_counts: dict[int, list[Any]] = {}  # id(obj) -> [reference (call it for the object), holders]


def _forget(key: int, ref: Any) -> None:
    with _lock:
        entry = _counts.get(key)
        if entry is not None and entry[0] is ref:
            del _counts[key]


def _reference(obj: Any) -> Any:
    key = id(obj)
    try:
        return weakref.ref(obj, lambda ref, key=key: _forget(key, ref))
    except TypeError:  # no weak references (e.g. __slots__ without __weakref__): keep it alive while held
        return lambda: obj


def holders(obj: Any) -> int:
    """How many holders ``obj`` has now (0: none)."""
    with _lock:
        entry = _counts.get(id(obj))
        return entry[1] if entry is not None and entry[0]() is obj else 0


class Holding:
    """One holder's claim on ``objects`` (duplicates and None are ignored).

    ``release()`` gives up the claim once (later calls return nothing) and returns the objects
    whose last holder this was: the caller closes those and only those.
    """

    def __init__(self, objects: Iterable[Any]):
        self._objects: list[Any] = []
        seen: set[int] = set()
        for obj in objects:
            if obj is None or id(obj) in seen:
                continue
            seen.add(id(obj))
            self._objects.append(obj)
        self._released = False
        self._guard = threading.Lock()
        with _lock:
            for obj in self._objects:
                entry = _counts.get(id(obj))
                if entry is not None and entry[0]() is obj:
                    entry[1] += 1
                else:
                    _counts[id(obj)] = [_reference(obj), 1]

    @property
    def released(self) -> bool:
        return self._released

    def release(self) -> list[Any]:
        with self._guard:
            if self._released:
                return []
            self._released = True
        last = []
        with _lock:
            for obj in self._objects:
                entry = _counts.get(id(obj))
                if entry is None or entry[0]() is not obj:
                    last.append(obj)  # never counted (cannot happen) or forgotten: this holder owns it
                    continue
                entry[1] -= 1
                if entry[1] <= 0:
                    del _counts[id(obj)]
                    last.append(obj)
        self._objects = []
        return last

    # A claim does not travel: a copy of the holder takes its own (see the module doc).
    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._objects, self._released, self._guard = [], True, threading.Lock()


def hold(*objects: Any) -> Holding:
    """A new :class:`Holding` on ``objects``."""
    return Holding(objects)


def contains(objects: Iterable[Any], obj: Any) -> bool:
    """Whether ``obj`` itself (by identity, not equality) is among ``objects``."""
    return any(o is obj for o in objects)
