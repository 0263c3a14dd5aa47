"""Which modules code imports, and which of them a sandbox can import (``gcop sandbox check``).

A reference solution that imports a module the sandbox lacks fails with ``ModuleNotFoundError``:
a correct core answer would score as wrong. :func:`scan_dataset` lists the modules a dataset's
solutions and tests import; :func:`probe_modules` imports each one inside a sandbox (the real
image, the real limits) and says which fail. The worker applies the same rule,
:func:`needed_modules` (defined in :mod:`gcop_env.sandbox.judge.plan`, which ships as stdlib-only
file), to refuse a run whose *tests* need a missing module: that is ``infra``, never ``fail``.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from gcop_env.sandbox.base import Sandbox
from gcop_env.sandbox.judge.plan import needed_modules

__all__ = ["DatasetImports", "needed_modules", "probe_modules", "scan_dataset"]

# Row fields that hold code, for the dataset formats this package reads (KodCode, HumanEval).
_SOLUTION_FIELDS = ("solution", "canonical_solution", "prompt")
_TEST_FIELDS = ("test",)


@dataclass
class DatasetImports:
    """The modules a dataset imports: rows per module, for solutions and for tests."""

    rows: int = 0
    solutions: Counter = field(default_factory=Counter)
    tests: Counter = field(default_factory=Counter)

    @property
    def modules(self) -> list[str]:
        return sorted(set(self.solutions) | set(self.tests))


def _rows(path: Path) -> Iterable[dict]:
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise ValueError(f"{path}:{number}: not a JSON object ({exc.msg})") from exc
        return
    import datasets

    kind = {".json": "json", ".parquet": "parquet"}.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"{path}: unknown data file type; use .jsonl, .jsonl.gz, .json or .parquet")
    yield from datasets.load_dataset(kind, data_files=str(path), split="train")


def scan_dataset(paths: Iterable[str | Path]) -> DatasetImports:
    """The modules imported by the rows' solutions and tests (KodCode or HumanEval row format).

    Names of the row's own files (``solution``) are left out: the sandbox writes them.
    """
    found = DatasetImports()
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"data file {path} does not exist")
        for row in _rows(path):
            found.rows += 1
            solution = "".join(row[k] for k in _SOLUTION_FIELDS if isinstance(row.get(k), str))
            test = "".join(row[k] for k in _TEST_FIELDS if isinstance(row.get(k), str))
            found.solutions.update(needed_modules(solution) - {"solution"})
            found.tests.update(needed_modules(test) - {"solution"})
    return found


_PROBE = """
import importlib

import pytest

MODULES = {modules!r}


@pytest.mark.parametrize("name", MODULES)
def test_import(name):
    importlib.import_module(name)
"""


def probe_modules(sandbox: Sandbox, names: Iterable[str], timeout: float = 120.0) -> dict[str, str | None]:
    """Import each module inside ``sandbox``: name -> None when it imports, else the error's last line.

    Raises :class:`RuntimeError` when the sandbox itself fails (nothing is known then).
    """
    modules = sorted(set(names))
    if not modules:
        return {}
    files = {"solution.py": "", "test_solution.py": _PROBE.format(modules=modules)}
    outcome = sandbox.run_pytest(files, timeout=timeout)
    if outcome.infra_error:
        raise RuntimeError(f"the sandbox failed while probing imports: {outcome.infra_error}")
    if outcome.timed_out or not outcome.complete:
        raise RuntimeError(f"probing {len(modules)} imports did not finish in {timeout:.0f}s (or crashed): {outcome.output[-1000:]}")
    results: dict[str, str | None] = {}
    for test in outcome.tests:
        name = test.nodeid.rsplit("[", 1)[-1].rstrip("]")
        if test.outcome == "passed":
            results[name] = None
        else:
            lines = [line for line in test.message.splitlines() if line.startswith("E ")]
            last = lines[-1][1:].strip() if lines else (test.message.strip().splitlines() or [""])[-1]
            results[name] = last or test.outcome
    for name in modules:
        results.setdefault(name, "not probed (the run did not collect it)")
    return results
