"""The shared path of the code validators: extract the program, run its tests in a sandbox, score.

A task supplies :meth:`CodeValidator.program_files` (which files the sandbox gets); the rest is
here: code extraction (:mod:`gcop_env.validators.code_extract`), a syntax check on the host, the
sandboxed pytest run (:mod:`gcop_env.sandbox`), retries of sandbox failures, and the mapping of
a run's outcome to a :class:`ValidationResult`:

============  ====================================================================
``pass``      every collected test passed, at least one was collected (reward 1)
``fail``      a test failed, errored or was skipped, or the run crashed
``timeout``   the run hit its wall-clock limit
``error``     no code in the reply, a syntax error, the solution failed to import, or
              it imports a module the sandbox lacks (``details["missing_module"]``)
``tampered``  the reward-hack monitor caught the code gaming the tests (reward 0;
              ``details["tamper"]`` lists each trick: family, layer, message, line)
``infra``     the sandbox itself failed (retried first), or the *tests* import a module
              the sandbox lacks (``details["missing_modules"]``); not a verdict
============  ====================================================================

The reward-hack monitor has two layers: a static scan of the code before anything runs
(:func:`gcop_env.sandbox.monitor.scan_code`; a finding means the code is not run at all) and
runtime checks inside the test process (the worker's ``_Monitor``), plus the report's own
forgery checks. With ``partial_credit=True`` the reward of a non-passing run is the fraction of
collected tests that passed (0 when tampered, or nothing was collected).
"""

from __future__ import annotations

import re
import copy
import threading
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from gcop_env.problem import Problem
from gcop_env.sandbox import PytestOutcome, Sandbox, make_sandbox
from gcop_env.sandbox.monitor import scan_code
from gcop_env.validators.base import Status, ValidationResult, Validator
from gcop_env.validators.code_extract import ExtractedCode, extract_code, reveals_code

_DETAIL_CHARS = 2000  # of output / failure text kept in the result details
_MISSING_MODULE = re.compile(r"ModuleNotFoundError: No module named '([\w.]+)'")


class CodeValidator(Validator):
    """Scores a core's reply by running the task's tests on the code in it.

    Args:
        sandbox: ``"docker"``, ``"process"``, ``"auto"`` (see :func:`gcop_env.sandbox.make_sandbox`)
            or a :class:`~gcop_env.sandbox.Sandbox` to share (the caller then closes it). A sandbox
            made from a name is started on the first validation and closed by :meth:`close`.
        timeout: wall-clock seconds per test run.
        partial_credit: reward = fraction of tests passed instead of 0 for a non-passing run.
        infra_retries: extra attempts when the sandbox itself fails.
        sandbox_options: passed to the sandbox's constructor (``pool_size``, ``memory_mb``, ...).
        static_monitor: scan the code for reward hacks before running it (status ``tampered``);
            the runtime checks inside the sandbox always run.
    """

    answer_format: ClassVar[str] = "code"

    def __init__(
        self,
        sandbox: str | Sandbox = "auto",
        timeout: float = 10.0,
        partial_credit: bool = False,
        infra_retries: int = 2,
        sandbox_options: Mapping[str, Any] | None = None,
        static_monitor: bool = True,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        if isinstance(sandbox, str) and sandbox not in ("docker", "process", "auto"):
            raise ValueError(f"sandbox must be 'docker', 'process', 'auto' or a Sandbox, got {sandbox!r}")
        self.timeout = float(timeout)
        self.partial_credit = bool(partial_credit)
        self.infra_retries = max(0, int(infra_retries))
        self.static_monitor = bool(static_monitor)
        self._sandbox_spec = sandbox
        self._sandbox_options = dict(sandbox_options or {})
        self._sandbox: Sandbox | None = sandbox if isinstance(sandbox, Sandbox) else None
        self._owns_sandbox = not isinstance(sandbox, Sandbox)
        self._lock = threading.Lock()

    # -- what a task supplies -------------------------------------------------------------------

    def entry_point(self, problem: Problem) -> str | None:
        """The name the tests call (helps pick the right code block)."""
        return problem.metadata.get("entry_point")

    def extract(self, problem: Problem, output: str) -> ExtractedCode:
        """The code in the reply (see :func:`~gcop_env.validators.code_extract.extract_code`)."""
        return extract_code(output, self.entry_point(problem))

    def program_files(self, problem: Problem, extracted: ExtractedCode, output: str) -> dict[str, str]:
        """The files the sandbox gets; must include ``solution.py`` and ``test_solution.py``."""
        raise NotImplementedError

    def reference_code(self, problem: Problem) -> str | None:
        """The reference solution the leak check compares strategies with."""
        return problem.solution

    # -- the validation path --------------------------------------------------------------------

    @property
    def sandbox(self) -> Sandbox:
        """The sandbox, started on first use."""
        with self._lock:
            if self._sandbox is None:
                self._sandbox = make_sandbox(str(self._sandbox_spec), **self._sandbox_options)
            return self._sandbox

    def validate(self, problem: Problem, output: str) -> ValidationResult:
        extracted = self.extract(problem, output)
        details: dict[str, Any] = {"extraction": extracted.source, "code_blocks": extracted.blocks}
        if not extracted.found:
            return ValidationResult(0.0, Status.ERROR, {**details, "reason": "no_code", "error": "no code found in the reply"})
        files = self.program_files(problem, extracted, output)
        syntax = _syntax_error(files["solution.py"])
        if syntax:
            return ValidationResult(0.0, Status.ERROR, {**details, "reason": "syntax", "error": syntax})
        if self.static_monitor:
            findings = scan_code(files["solution.py"])
            if findings:  # not run at all: the code games the tests, whatever else it does
                tamper = [f.as_dict() for f in findings]
                return ValidationResult(0.0, Status.TAMPERED, {**details, "reason": "tampered", "tamper": tamper})
        outcome = self.run_tests(files)
        return self.score(outcome, details)

    def run_tests(self, files: Mapping[str, str]) -> PytestOutcome:
        """Run the files' tests, retrying sandbox failures ``infra_retries`` times."""
        outcome = PytestOutcome.infra("not run")
        for attempt in range(self.infra_retries + 1):
            try:
                outcome = self.sandbox.run_pytest(files, timeout=self.timeout)
            except Exception as exc:  # e.g. the Docker engine is unreachable when the pool starts
                outcome = PytestOutcome.infra(f"{exc.__class__.__name__}: {exc}")
            if outcome.infra_error is None or outcome.missing_modules:  # a missing module stays missing
                return outcome
            if attempt < self.infra_retries:
                time.sleep(0.5 * (attempt + 1))
        return outcome

    def score(self, outcome: PytestOutcome, details: Mapping[str, Any] | None = None) -> ValidationResult:
        """The :class:`ValidationResult` of a sandbox run."""
        details = {**(details or {}), **outcome.summary()}
        if outcome.infra_error is not None:
            return ValidationResult.infra(outcome.infra_error, **details)
        if outcome.output:
            details["output"] = outcome.output[-_DETAIL_CHARS:]
        tamper = list(outcome.monitor) + [
            {"family": "forged_report", "layer": "report", "message": why, "where": None} for why in outcome.tampered
        ]
        if tamper:  # before any other verdict: a caught trick voids whatever the run reported
            return ValidationResult(0.0, Status.TAMPERED, {**details, "reason": "tampered", "tamper": tamper})
        failures = [
            {"test": t.nodeid, "outcome": t.outcome, "message": t.message[-_DETAIL_CHARS // 4 :]}
            for t in outcome.tests
            if t.outcome != "passed"
        ]
        if failures:
            details["failures"] = failures[:5]
        partial = outcome.pass_fraction if self.partial_credit else 0.0
        if outcome.all_passed:
            return ValidationResult(1.0, Status.PASS, details)
        if outcome.timed_out:
            return ValidationResult(partial, Status.TIMEOUT, {**details, "reason": "timeout"})
        missing = _missing_module(outcome)
        if missing:  # the tests' own imports were checked before the run: this one is the candidate's
            error = f"the solution imports {missing}, which the sandbox does not have"
            return ValidationResult(0.0, Status.ERROR, {**details, "reason": "missing_module", "missing_module": missing, "error": error})
        if outcome.collected == 0 and outcome.collect_errors:
            error = outcome.collect_errors[0][-_DETAIL_CHARS:]
            return ValidationResult(0.0, Status.ERROR, {**details, "reason": "import", "error": error})
        if not outcome.complete:
            reason = "crashed"  # the test process ended before pytest finished (os._exit, a signal)
        elif outcome.collected == 0:
            reason = "no_tests"
        else:
            reason = "tests_failed"
        return ValidationResult(partial, Status.FAIL, {**details, "reason": reason})

    def leaks(self, problem: Problem, strategy: str) -> bool:
        """A fenced code block, a written-out function, or most of the reference solution."""
        return reveals_code(strategy, self.reference_code(problem))

    def close(self) -> None:
        with self._lock:
            sandbox, self._sandbox = self._sandbox, (None if self._owns_sandbox else self._sandbox)
        if sandbox is not None and self._owns_sandbox:
            sandbox.close()

    # Pickling and deep copies: a sandbox made from a name is this validator's own (live workers,
    # containers), so a copy starts its own on first use. A Sandbox passed in is shared by a deep
    # copy but cannot cross processes.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]
        if self._owns_sandbox:
            state["_sandbox"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __deepcopy__(self, memo: dict) -> "CodeValidator":
        clone = type(self).__new__(type(self))
        memo[id(self)] = clone
        if not self._owns_sandbox:
            memo[id(self._sandbox)] = self._sandbox  # shared, not copied
        clone.__setstate__(copy.deepcopy(self.__getstate__(), memo))
        return clone

    def __reduce_ex__(self, protocol):
        if not self._owns_sandbox:
            raise TypeError(f"{type(self).__name__} was given a running Sandbox object, which cannot be pickled; "
                            "pass sandbox='docker', 'process' or 'auto' so each process starts its own")
        return super().__reduce_ex__(protocol)


def _missing_module(outcome: PytestOutcome) -> str | None:
    """The module named by a ``ModuleNotFoundError`` that stopped the candidate, if one did."""
    texts = list(outcome.collect_errors) + [t.message for t in outcome.tests if t.outcome in ("failed", "error")]
    for text in texts:
        match = _MISSING_MODULE.search(text)
        if match:
            return match.group(1)
    return None


def _syntax_error(code: str) -> str | None:
    """A short message when ``code`` does not compile (checked on the host, nothing runs)."""
    try:
        compile(code, "solution.py", "exec", dont_inherit=True)
    except SyntaxError as exc:
        return f"SyntaxError: {exc.msg} (solution.py, line {exc.lineno})"
    except (ValueError, RecursionError, MemoryError, OverflowError) as exc:
        return f"{exc.__class__.__name__}: {exc}"
    return None
