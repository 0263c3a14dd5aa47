"""Grading a file of core outputs the way the environment would (``gcop score``, :mod:`gcop_env.cli.score`).

Each prediction row is ``{"task_id": ..., "completion": <the core's whole reply>}``; each result
row is ``{"line", "task_id", "status", "reward", "details"}``, in the input's order. Scoring goes
through the task's validator (the same extraction and validation the env uses).

Bad input loses nothing:

* Rows that cannot be graded (not UTF-8, bad JSON, no task_id, an unknown task id, a completion
  that is not a string or not valid Unicode) get ``"status": "invalid"`` and an ``"error"`` naming
  the file and line; the rest are still graded.
* Duplicate task ids: the **first** row of a task id is graded; every later row of it gets
  ``"status": "duplicate"`` and is listed in the summary (``duplicates``).
* ``pass_rate`` is passes over all rows except duplicates (invalid and infra rows count as not
  passed); ``pass_rate_graded`` is passes over graded rows only; ``mean_reward`` is over graded rows.
* ``--out`` is checked before any grading (writable, not one of the inputs). Result rows are
  appended and fsynced to ``<out>.partial`` as they finish; at the end ``<out>`` is written
  atomically (temp file + rename) in input order and the partial file removed. Re-running the
  same command after a crash or Ctrl-C resumes from the partial file (rows that hit an
  infrastructure error are graded again). Ctrl-C / SIGTERM stop grading, keep the finished rows
  and exit 130.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gcop_env.problem import Problem
from gcop_env.validators.base import Status, ValidationResult, Validator

INVALID = "invalid"
DUPLICATE = "duplicate"
RESUME_HEADER = "gcop_score_resume"


@dataclass(frozen=True)
class ScoreTask:
    """What ``gcop score`` needs of a task: how to load its problems and build its validator."""

    load: Callable[..., list[Problem]]
    make_validator: Callable[[argparse.Namespace], Validator]
    code: bool


def _kodcode() -> ScoreTask:
    from gcop_env.validators.kodcode import KodCodeValidator, load_kodcode

    return ScoreTask(load_kodcode, lambda a: KodCodeValidator(sandbox=a.sandbox, timeout=a.timeout, partial_credit=a.partial_credit), True)


def _humaneval() -> ScoreTask:
    from gcop_env.validators.humaneval import HumanEvalValidator, load_humaneval

    return ScoreTask(load_humaneval, lambda a: HumanEvalValidator(sandbox=a.sandbox, timeout=a.timeout, partial_credit=a.partial_credit), True)


def _gsm8k() -> ScoreTask:
    from gcop_env.validators.gsm8k import GSM8KValidator, load_gsm8k  # written with the env's spine

    return ScoreTask(load_gsm8k, lambda a: GSM8KValidator(), False)


TASKS: dict[str, Callable[[], ScoreTask]] = {"kodcode": _kodcode, "humaneval": _humaneval, "gsm8k": _gsm8k}


@dataclass(frozen=True)
class PredictionRow:
    """One non-blank line of the predictions file, or why it cannot be graded."""

    line: int
    task_id: str | None
    completion: str | None
    error: str | None = None


def read_predictions(path: Path) -> list[PredictionRow]:
    """Every non-blank line of ``path``; a bad line is an invalid row naming the file and line."""
    rows = []
    for number, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        where = f"{path}: line {number}"
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            rows.append(PredictionRow(number, None, None, f"{where}: not valid UTF-8 (byte {exc.start})"))
            continue
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except ValueError as exc:
            rows.append(PredictionRow(number, None, None, f"{where}: not valid JSON ({getattr(exc, 'msg', exc)})"))
            continue
        if not isinstance(row, dict):
            rows.append(PredictionRow(number, None, None, f"{where}: a row must be a JSON object"))
            continue
        task_id = row.get("task_id")
        if isinstance(task_id, bool) or not isinstance(task_id, (str, int)) or not _is_text(str(task_id)):
            rows.append(PredictionRow(number, None, None, f"{where}: no task_id (a string or integer)"))
            continue
        task_id = str(task_id)
        completion = row.get("completion")
        if not isinstance(completion, str):
            rows.append(PredictionRow(number, task_id, None,
                                      f"{where}: 'completion' must be a string (task_id {task_id!r})"))
        elif not _is_text(completion):
            rows.append(PredictionRow(number, task_id, None,
                                      f"{where}: 'completion' holds a lone surrogate, not valid Unicode text "
                                      f"(task_id {task_id!r})"))
        else:
            rows.append(PredictionRow(number, task_id, completion))
    return rows


def _is_text(text: str) -> bool:
    """True when ``text`` encodes as UTF-8 (no lone surrogates, e.g. from a JSON ``"\ud800"`` escape)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def partial_path(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def check_out(out: Path, inputs: list[Path]) -> str | None:
    """Why ``out`` cannot be used (an input, a directory, not writable), or None."""
    for candidate in (out, partial_path(out)):
        for source in inputs:
            if _same_file(candidate, source):
                return f"--out {out} would overwrite the input file {source}; choose another path"
    if out.is_dir():
        return f"--out {out} is a directory; give a file path"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(partial_path(out), "a", encoding="utf-8"):
            pass
        with tempfile.NamedTemporaryFile(dir=out.parent, prefix=f".{out.name}.", delete=True):
            pass
    except OSError as exc:
        return f"--out {out} is not writable ({exc.strerror or exc})"
    return None


def data_paths(task: str, split: str, data_files: Any) -> list[Path]:
    from gcop_env.validators.data import DataError, resolve_data_files

    if data_files is None:
        return []
    try:
        files = resolve_data_files(split, data_files)
    except DataError:
        files = data_files
    items = [files] if isinstance(files, (str, os.PathLike)) else list(files)
    return [Path(f) for f in items]


def resume_fingerprint(args: argparse.Namespace, data_files: Any) -> dict[str, Any]:
    """What a partial file's rows depend on: resuming under anything else is refused."""
    return {"task": args.task, "split": args.split, "data_files": data_files, "partial_credit": args.partial_credit,
            "timeout": args.timeout,
            "predictions_sha256": hashlib.sha256(args.predictions.read_bytes()).hexdigest()}


def read_partial(path: Path, fingerprint: dict[str, Any]) -> tuple[dict[int, dict[str, Any]], str | None]:
    """Finished result rows by input line, or why the partial file cannot be resumed."""
    from gcop_env.utils.files import JsonlError, read_jsonl_rows

    try:
        rows = read_jsonl_rows(path, repair=True)
    except JsonlError as exc:
        return {}, f"cannot resume from {exc}"
    if not rows:
        return {}, None
    header = rows[0].get(RESUME_HEADER)
    if header != fingerprint:
        changed = sorted(k for k in fingerprint if not isinstance(header, dict) or header.get(k) != fingerprint[k])
        return {}, (f"{path} holds results of a different run (changed: {', '.join(changed)}); "
                    "delete it to start over, or use another --out")
    done = {}
    for row in rows[1:]:
        if isinstance(row.get("line"), int) and row.get("status") != Status.INFRA.value:
            done[row["line"]] = row  # infra rows are graded again
    return done, None


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts per status, mean reward over graded rows, and the pass rates.

    ``pass_rate``: passes over every row but duplicates (invalid and infra rows count as not
    passed), so a file of one good row and eight bad ones does not show 1.0.
    ``pass_rate_graded``: passes over graded rows (invalid, duplicate and infra rows left out).
    """
    counts = Counter(r["status"] for r in results)
    isolation = Counter(str(r["details"]["isolation"]) for r in results
                        if isinstance(r.get("details"), dict) and r["details"].get("isolation"))
    graded = [r["reward"] for r in results if r["status"] not in (INVALID, DUPLICATE, Status.INFRA.value)]
    counted = len(results) - counts.get(DUPLICATE, 0)
    passes = counts.get(Status.PASS.value, 0)
    return {
        "rows": len(results),
        "graded": len(graded),
        "invalid": counts.get(INVALID, 0),
        "duplicates": [{"line": r["line"], "task_id": r["task_id"]} for r in results if r["status"] == DUPLICATE],
        "infra_errors": counts.get(Status.INFRA.value, 0),
        "status_counts": dict(sorted(counts.items())),
        "mean_reward": (sum(graded) / len(graded)) if graded else None,
        "pass_rate": (passes / counted) if counted else None,
        "pass_rate_graded": (passes / len(graded)) if graded else None,
        # reward hacks caught by the monitor: counted apart from wrong answers (they are not "fail")
        "tampered": counts.get(Status.TAMPERED.value, 0),
        "tamper_rate": (counts.get(Status.TAMPERED.value, 0) / len(graded)) if graded else None,
        # code tasks: how many verdicts came from trusted isolation (the tests out of the candidate's
        # reach) and how many from the in-process fallback (docs/sandbox.md)
        **({"isolation": dict(sorted(isolation.items()))} if isolation else {}),
    }


def cpu_count() -> int:
    return os.cpu_count() or 1


@dataclass
class Grading:
    """What :func:`grade_predictions` did: every result row by input line, and whether it was stopped."""

    results: dict[int, dict[str, Any]]
    todo: int          # rows that needed grading this run
    graded: int        # of those, rows graded (all of them unless interrupted)
    interrupted: bool

    def ordered(self) -> list[dict[str, Any]]:
        """The result rows in input order."""
        return [self.results[line] for line in sorted(self.results)]


def grade_predictions(predictions: list[PredictionRow], problems: dict[str, Problem], validator: Validator, *,
                      source: Path, task: str, split: str, done: dict[int, dict[str, Any]] | None = None,
                      workers: int = 1, on_result: Callable[[dict[str, Any]], None] | None = None,
                      stop: Any = None) -> Grading:
    """Grade every prediction row with ``validator``, ``workers`` rows at once.

    A row that cannot be graded (read as invalid, an unknown task id, a later row of a task id already
    seen) gets its ``invalid`` / ``duplicate`` result with an error naming ``source`` and the line; a
    row in ``done`` (finished result rows by line, from a resumed run) is kept as it is. Each new
    result is passed to ``on_result`` as it finishes (to save progress). ``stop``
    (:class:`~gcop_env.utils.interrupt.StopRequest`) ends the grading early: no new row starts, and
    the validator is left open for the rows in flight. Otherwise the validator is closed at the end.
    """
    from concurrent.futures import ThreadPoolExecutor

    from gcop_env.utils.interrupt import StopRequest, completed_until_stopped

    done = done or {}
    stop = stop if stop is not None else StopRequest()
    results: dict[int, dict[str, Any]] = {}
    first_line: dict[str, int] = {}
    todo: list[PredictionRow] = []
    for row in predictions:
        error, status = row.error, INVALID
        if error is None and row.task_id not in problems:
            error = f"{source}: line {row.line}: unknown task_id {row.task_id!r} (not in {task} split {split!r})"
        elif error is None and row.task_id in first_line:
            error, status = (f"{source}: line {row.line}: duplicate task_id {row.task_id!r} (first at line "
                             f"{first_line[row.task_id]}); only the first row of a task id is graded"), DUPLICATE
        if error is None:
            first_line[row.task_id] = row.line
            if row.line in done and done[row.line].get("task_id") == row.task_id:
                results[row.line] = done[row.line]
            else:
                todo.append(row)
        else:
            results[row.line] = {"line": row.line, "task_id": row.task_id, "status": status, "reward": None,
                                 "error": error}

    def grade(row: PredictionRow) -> dict[str, Any]:
        try:
            result = validator.validate(problems[row.task_id], row.completion)
        except Exception as exc:  # noqa: BLE001 - a validator bug must not lose the other rows
            result = ValidationResult.infra(f"the validator raised {exc.__class__.__name__}: {exc}")
        return {"line": row.line, "task_id": row.task_id, "status": result.status.value, "reward": result.reward,
                "details": result.details}

    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        for row, future in completed_until_stopped(pool, grade, todo, stop, max_in_flight=max(1, workers)):
            results[row.line] = future.result()
            if on_result is not None:
                on_result(results[row.line])
    finally:
        pool.shutdown(wait=not stop.requested, cancel_futures=True)
        if not stop.requested:
            validator.close()
    return Grading(results, len(todo), sum(1 for r in todo if r.line in results), stop.requested)
