"""``gcop score``: grade a file of core outputs the way the environment would.

Each prediction row is ``{"task_id": ..., "completion": <the core's whole reply>}``; each result
row is ``{"task_id", "status", "reward", "details"}``, in the input's order. Rows that cannot be
graded (bad JSON, no task_id, an unknown task id) get ``"status": "invalid"`` and an ``"error"``,
and the rest are still graded. Scoring goes through the task's validator (the same extraction
and validation the env uses).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gcop_env.problem import Problem
from gcop_env.validators.base import Status, ValidationResult, Validator

INVALID = "invalid"


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


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Grade core outputs: one JSON row per prediction, {\"task_id\": ..., \"completion\": ...}.",
    )
    parser.add_argument("--task", required=True, choices=sorted(TASKS), help="the task the predictions answer")
    parser.add_argument("--predictions", required=True, type=Path, help="JSONL file of {task_id, completion} rows")
    parser.add_argument("--out", type=Path, default=None, help="JSONL file for the results (default: print only the summary)")
    parser.add_argument("--data-files", default=None, help="local data file(s) instead of the default source (comma-separated)")
    parser.add_argument("--split", default="test", help="the split the task ids come from (default test; KodCode: train/test/all)")
    parser.add_argument("--sandbox", default="auto", choices=["docker", "process", "auto"], help="where code runs (code tasks; default auto)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per test run (code tasks; default 10)")
    parser.add_argument("--partial-credit", action="store_true", help="reward = fraction of tests passed (code tasks)")
    parser.add_argument("--workers", type=int, default=None, help="validations in parallel (default: CPU count for code, 1 otherwise)")
    return parser


def _read_predictions(path: Path) -> list[tuple[int, dict[str, Any] | None, str | None]]:
    """(line number, row or None, error or None) per non-blank line."""
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                rows.append((number, None, f"line {number}: not valid JSON ({exc.msg})"))
                continue
            if not isinstance(row, dict):
                rows.append((number, None, f"line {number}: a row must be a JSON object"))
            elif not isinstance(row.get("task_id"), (str, int)):
                rows.append((number, None, f"line {number}: no task_id"))
            elif not isinstance(row.get("completion"), str):
                rows.append((number, row, f"line {number}: 'completion' must be a string (task_id {row['task_id']!r})"))
            else:
                rows.append((number, row, None))
    return rows


def score_cli(argv: list[str] | None = None, prog: str = "gcop score") -> int:
    """Entry point for ``gcop score``. Exit status 0 when every row was graded, 1 otherwise."""
    args = _parser(prog).parse_args(argv)
    if not args.predictions.exists():
        print(f"error: predictions file {args.predictions} does not exist", file=sys.stderr)
        return 2
    try:
        task = TASKS[args.task]()
    except ImportError as exc:
        print(f"error: task {args.task} is not available: {exc}", file=sys.stderr)
        return 2
    data_files = None
    if args.data_files:
        parts = [p.strip() for p in args.data_files.split(",") if p.strip()]
        data_files = parts[0] if len(parts) == 1 else parts
    try:
        problems = {p.task_id: p for p in task.load(split=args.split, data_files=data_files)}
    except Exception as exc:
        print(f"error: cannot load {args.task} ({args.split}): {exc}", file=sys.stderr)
        return 2
    predictions = _read_predictions(args.predictions)
    validator = task.make_validator(args)
    workers = args.workers or (_cpu_count() if task.code else 1)

    def grade(item: tuple[int, dict[str, Any] | None, str | None]) -> dict[str, Any]:
        number, row, error = item
        task_id = None if row is None else str(row.get("task_id"))
        if error is None and task_id not in problems:
            error = f"line {number}: unknown task_id {task_id!r} (not in {args.task} split {args.split!r})"
        if error is not None:
            return {"task_id": task_id, "status": INVALID, "reward": None, "error": error}
        try:
            result = validator.validate(problems[task_id], row["completion"])
        except Exception as exc:  # a validator bug must not lose the other rows
            result = ValidationResult.infra(f"the validator raised {exc.__class__.__name__}: {exc}")
        return {"task_id": task_id, "status": result.status.value, "reward": result.reward, "details": result.details}

    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            results = list(pool.map(grade, predictions))
    finally:
        validator.close()

    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("w", encoding="utf-8") as handle:
            for result in results:
                handle.write(json.dumps(result, default=str) + "\n")
    for result in results:
        if result["status"] == INVALID:
            print(f"warning: {result['error']}", file=sys.stderr)
    print(json.dumps(summarize(results), indent=2))
    bad = sum(r["status"] in (INVALID, Status.INFRA.value) for r in results)
    return 0 if bad == 0 else 1


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts per status and the mean reward over graded rows (infra and invalid rows excluded)."""
    counts = Counter(r["status"] for r in results)
    graded = [r["reward"] for r in results if r["status"] not in (INVALID, Status.INFRA.value)]
    return {
        "rows": len(results),
        "graded": len(graded),
        "status_counts": dict(sorted(counts.items())),
        "mean_reward": (sum(graded) / len(graded)) if graded else None,
        "pass_rate": (counts.get(Status.PASS.value, 0) / len(graded)) if graded else None,
        # reward hacks caught by the monitor: counted apart from wrong answers (they are not "fail")
        "tampered": counts.get(Status.TAMPERED.value, 0),
        "tamper_rate": (counts.get(Status.TAMPERED.value, 0) / len(graded)) if graded else None,
    }


def _cpu_count() -> int:
    import os

    return os.cpu_count() or 1


if __name__ == "__main__":
    sys.exit(score_cli())
