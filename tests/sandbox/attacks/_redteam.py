"""The red team's attack suite for issue 18: a WRONG solution must never be scored ``pass``.

Every attack is a wrong ``solution.py`` (and the tests it faces) that tries to get ``pass`` by one
technique. It is scored through the public path that ``gcop score`` and the environments use, a
:class:`~gcop_env.validators.kodcode.KodCodeValidator` (or the HumanEval one, for ``check(candidate)``
files) over the sandbox under test, static scan on, in both backends and under both runners. The
verdict must be one the attack's ``allowed`` names (never ``pass``, never ``infra``: ``infra`` means
our harness failed, and it is left out of the reward, so a candidate that can make it would have a
way to erase its failures).

Where today's sandbox scores the attack ``pass`` (or ``infra``, or hangs), the case is marked at run
time with ``xfail(strict=True, reason="forged today: issue 18")`` (the reason says which): the suite
stays green, and the day the trusted runner stops the attack the strict mark turns into a failure that
tells the fixer to drop it. The mark is decided per backend, runner, privilege drop and the sandbox's
pytest version (:class:`Ctx`), by the predicate in the attack's ``forged``.

Attack code is written to get past the static scan (``gcop_env.sandbox.monitor.scan_code``): computed
names instead of ``sys._getframe``, ``__import__("ct" + "ypes")`` instead of ``import ctypes``... A
trick the static scan reads is not an attack on the sandbox.

Run: ``GCOP_REQUIRE_DOCKER=1 .venv/bin/python -m pytest -q -p no:cacheprovider tests/sandbox/attacks``
(about 3.5 minutes on an idle 2-CPU machine; add ``--junitxml=attacks.xml`` and run
``python tests/sandbox/attacks/report_table.py attacks.xml`` for the family x backend x runner table).
When the trusted runner stops an attack, its strict xfail turns into a failure: set that attack's
``forged`` to :func:`nowhere` (or the predicate of the cases still forged). Likewise ``false_flag`` for
the benign idioms.

With trusted isolation (issue 18, the default) every attack is ``forged=nowhere`` (the default; where
each was forged before is in this suite's history, the commit that merged it) but one: ``filesystem_search_for_the_test_file`` in the process backend
*without Landlock*, which finds whatever readable copy of a test the host holds (a non-strict mark: it
depends on the machine). Where the kernel has Landlock the candidate sees none of the host's other files
and the attack is expected caught.
"""

from __future__ import annotations

import textwrap
import threading
from dataclasses import dataclass
from typing import Callable

import pytest

from _sandbox_support import TESTS, make_backend
from gcop_env.problem import Problem
from gcop_env.validators.base import Status, ValidationResult
from gcop_env.validators.humaneval import HumanEvalValidator
from gcop_env.validators.kodcode import KodCodeValidator

FORGED_REASON = "forged today: issue 18"
FALSE_FLAG_REASON = "false flag today: issue 18"

# The default KodCode task: ``answer()`` must return 42 (an int). Wrong solutions return 41.
KODCODE_TESTS = TESTS

# A KodCode file in the common "result, then assert on the next line" shape.
MULTILINE_TESTS = '''from solution import *


def test_answer():
    result = answer()
    assert result == 42
    assert result + 1 == 43


def test_type():
    result = answer()
    assert isinstance(result, int)
'''

# A HumanEval-style task: the program is prompt + the reply's code, the test is check(candidate).
HUMANEVAL_PROMPT = (
    'def add(x: int, y: int) -> int:\n    """Add two numbers x and y.\n    >>> add(2, 3)\n    5\n    """\n'
)
HUMANEVAL_TEST = '''METADATA = {"author": "redteam"}


def check(candidate):
    assert candidate(2, 3) == 5
    assert candidate(0, 0) == 0
    assert candidate(-4, 9) == 5
    assert candidate(7, 5) == 12
    assert candidate(10, -10) == 0
'''

ALLOWED = frozenset({Status.FAIL, Status.TAMPERED, Status.ERROR, Status.TIMEOUT})


@dataclass(frozen=True)
class Ctx:
    """Where a case runs: the backend, the runner asked for, whether runs drop to another uid (the
    process backend as root), the major version of the sandbox's pytest (the Docker image has
    Debian's, the process backend this interpreter's), and whether the process backend confines the
    candidate's file access (Landlock, where the kernel has it: ``versions["filesystem"]``)."""

    kind: str
    runner: str
    drops: bool
    pytest: int
    confined: bool = False  # the process backend's candidate sees only the files it needs (Landlock)


Where = Callable[[Ctx], bool]  # forged (or falsely flagged) today, there


def nowhere(ctx: Ctx) -> bool:
    return False


def everywhere(ctx: Ctx) -> bool:
    return True


def plain_only(ctx: Ctx) -> bool:
    """The plain runner (``runner="auto"`` on a plain test file); pytest's CallInfo stops it."""
    return ctx.runner == "auto"


def plain_or_new_pytest(ctx: Ctx) -> bool:
    """The plain runner, and pytest >= 8, whose new-style hook wrappers (the logging plugin's) have the
    test's exception thrown into them, inside the context managers they hold."""
    return ctx.runner == "auto" or ctx.pytest >= 8


def new_pytest(ctx: Ctx) -> bool:
    """Where the sandbox's pytest is 8 or newer (the process backend here; the Docker image has 7)."""
    return ctx.pytest >= 8


def pytest_only(ctx: Ctx) -> bool:
    return ctx.runner == "pytest"


def same_uid(ctx: Ctx) -> bool:
    """Where the candidate runs as the same uid as the fork server: Docker (both ``nobody``), and the
    process backend when it does not drop privileges (not root)."""
    return ctx.kind == "docker" or not ctx.drops


def shares_the_hosts_files(ctx: Ctx) -> bool:
    """The process backend without Landlock: the candidate's user reads what every user may read on
    the host (not the run's own test file, which only the judge's user can open, but another copy of
    it left about). With Landlock it reads only the Python installation, the system's libraries and
    its own dir (``gcop_env.sandbox.supervisor.landlock``)."""
    return ctx.kind == "process" and not ctx.confined


# ``/proc/self/mem`` is readable unless the run changed uid (the kernel then makes it non-dumpable):
# where the candidate shares the server's uid.
readable_self_mem = same_uid


@dataclass(frozen=True)
class Attack:
    """One wrong solution and the technique it uses to get ``pass``."""

    name: str
    technique: str  # one line, for the report
    solution: str
    tests: str = KODCODE_TESTS
    humaneval: bool = False  # a check(candidate) file scored by the HumanEval validator
    forged: Where = nowhere  # where today's sandbox scores it pass
    allowed: frozenset = ALLOWED
    timeout: float = 5.0
    fresh: bool = False  # on a sandbox of its own: the attack may leave the pool out of step
    reason: str = FORGED_REASON  # the xfail reason where ``forged`` holds (when today's failure is not a pass)
    hang_s: float = 120.0  # beyond its own timeout: no verdict by then means the sandbox hung
    strict: bool = True  # False where ``forged`` depends on the machine, not on the sandbox (files on the host)

    def __str__(self) -> str:  # the test id
        return self.name


@dataclass(frozen=True)
class Benign:
    """A correct solution in an everyday idiom: must pass, and must not be flagged."""

    name: str
    solution: str
    tests: str
    humaneval: tuple[str, str, str] | None = None  # (prompt, test, entry point)
    false_flag: Where = nowhere  # where today's sandbox scores it tampered (or otherwise not pass)
    timeout: float = 10.0

    def __str__(self) -> str:
        return self.name


def ids(cases) -> list[str]:
    return [str(c) for c in cases]


def _reply(code: str) -> str:
    return "```python\n" + textwrap.dedent(code).strip("\n") + "\n```"


def validate(box, solution: str, tests: str = KODCODE_TESTS, humaneval: bool | tuple = False,
             timeout: float = 5.0) -> ValidationResult:
    """The verdict ``gcop score`` would give ``solution`` (static scan on) on ``box``."""
    if humaneval:
        prompt, test, entry = humaneval if isinstance(humaneval, tuple) else (HUMANEVAL_PROMPT, tests, "add")
        problem = Problem(task_id="redteam/he", question=prompt, reference=test,
                          metadata={"entry_point": entry, "prompt": prompt})
        validator = HumanEvalValidator(sandbox=box, timeout=timeout)
    else:
        problem = Problem(task_id="redteam/kc", question="Return the answer.", reference=tests,
                          metadata={"entry_point": "answer"})
        validator = KodCodeValidator(sandbox=box, timeout=timeout)
    return validator.validate(problem, _reply(solution))


def context(box, runner: str) -> Ctx:
    """The :class:`Ctx` of runs on ``box`` under ``runner`` (starts a pool member to learn its pytest)."""
    box.warm()
    major = str(box.versions.get("pytest") or "0").split(".")[0]
    confined = str(box.versions.get("filesystem") or "").startswith("confined")
    return Ctx(box.kind, runner, bool(getattr(box, "drops_privileges", False)), int(major) if major.isdigit() else 0,
               confined)


def mark_if(request, condition: bool, reason: str, strict: bool = True) -> None:
    """Mark the running test xfail (strict unless told) when ``condition`` (decided per backend and runner)."""
    if condition:
        request.node.add_marker(pytest.mark.xfail(strict=strict, reason=reason))


def _describe(result: ValidationResult) -> str:
    d = result.details
    keep = {k: d.get(k) for k in ("runner", "passed", "collected", "tamper", "failures", "error", "reason") if d.get(k)}
    return f"{result.status.value}: {keep}"[:3000]


def _validate_or_hang(box, attack: Attack) -> ValidationResult:
    """:func:`validate`, in a thread: a sandbox that never answers fails the test (and is closed, which
    wakes a run waiting for a pool member) instead of hanging the suite."""
    done: dict = {}

    def work() -> None:
        try:
            done["result"] = validate(box, attack.solution, attack.tests, attack.humaneval, attack.timeout)
        except BaseException as exc:  # re-raised in the test's thread
            done["error"] = exc

    thread = threading.Thread(target=work, name="redteam-validate", daemon=True)
    thread.start()
    limit = attack.hang_s + 3 * attack.timeout  # (the validator tries a run up to three times)
    thread.join(limit)
    if thread.is_alive():
        box.close()
        thread.join(30)
        pytest.fail(f"the sandbox gave no verdict in {limit:.0f} s: it hung")
    if "error" in done:
        raise done["error"]
    return done["result"]


def check_attack(request, box, runner: str, attack: Attack) -> ValidationResult:
    """Score ``attack`` on ``box`` under ``runner``; assert the verdict is one it allows (never pass/infra)."""
    mark_if(request, attack.forged(context(box, runner)), attack.reason, attack.strict)
    if attack.fresh:
        own = make_backend(box.kind, pool_size=1, runner=runner)
        try:
            result = _validate_or_hang(own, attack)
        finally:
            own.close()
    else:
        result = _validate_or_hang(box, attack)
    assert result.status is not Status.INFRA, "an attack must never be scored infra: " + _describe(result)
    assert result.status is not Status.PASS, "a wrong solution was scored pass: " + _describe(result)
    assert result.status in attack.allowed, _describe(result)
    return result


def check_benign(request, box, runner: str, case: Benign) -> ValidationResult:
    mark_if(request, case.false_flag(context(box, runner)), FALSE_FLAG_REASON)
    result = validate(box, case.solution, case.tests, case.humaneval or False, case.timeout)
    assert result.status is Status.PASS, _describe(result)
    assert "tamper" not in result.details, _describe(result)
    return result


# ------------------------------------------------------------------ solution snippets
# Pieces of attack code that several attacks paste into their solution's source.

REPORT_FD = '''
import os
def _report_fd():
    """The report pipe: the one pipe of which this process holds a single fd (pytest's fd capture
    keeps a saved copy of stdout and of stderr, so the output pipe's fds come in pairs)."""
    pipes = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink("/proc/self/fd/" + name)
        except OSError:
            continue
        if target.startswith("pipe:"):
            pipes.setdefault(target, []).append(int(name))
    return [fds[0] for fds in pipes.values() if len(fds) == 1][0]
'''

MEMORY = '''
def _regions(pid="self"):
    """(start, bytes) of each readable mapping of process ``pid`` (up to 256 MiB), through /proc/PID/mem."""
    with open("/proc/%s/maps" % pid) as maps, open("/proc/%s/mem" % pid, "rb", 0) as mem:
        for line in maps:
            fields = line.split()
            if "r" not in fields[1] or (len(fields) > 5 and fields[5].startswith("[v")):
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if end - start > 256 << 20:
                continue
            try:
                mem.seek(start)
                chunk = mem.read(end - start)
            except (OSError, ValueError, OverflowError):
                continue
            yield start, chunk
'''

EMITTER_VIA_GC = '''
import gc
def _find_emitter():
    """The run's emit closure among the collector's objects (not the fork server's warm-up one, whose
    nonce is all zeros)."""
    for obj in getattr(gc, "get_" + "objects")():
        if type(obj).__name__ == "function" and obj.__name__ == "emit" and obj.__closure__:
            cells = dict(zip(obj.__code__.co_freevars, (c.cell_contents for c in obj.__closure__)))
            if cells.get("prefix", b"0" * 32)[:32] != b"0" * 32:
                return obj
    return None
'''
