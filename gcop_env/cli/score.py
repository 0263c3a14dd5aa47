"""``gcop score``: grade a JSONL file of core outputs exactly as the env would
(:mod:`gcop_env.validators.score`). Exit 0 when every row was graded, 1 when some were not
(invalid, duplicate or infra rows), 2 on a usage error, 130 when interrupted (re-run to resume)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gcop_env.cli.args import OneLineErrorParser, usage_error
from gcop_env.cli.exit_codes import EXIT_FAILED, EXIT_OK, exit_interrupted
from gcop_env.utils.files import JsonlAppender, write_text_atomic
from gcop_env.utils.interrupt import stop_on_signal
from gcop_env.utils.numbers import check_int, check_number
from gcop_env.validators.base import Status
from gcop_env.validators.score import (DUPLICATE, INVALID, RESUME_HEADER, TASKS, check_out, cpu_count, data_paths,
                                       grade_predictions, partial_path, read_partial, read_predictions,
                                       resume_fingerprint, summarize)


def build_parser(prog: str = "gcop score") -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog=prog,
        description="Grade core outputs: one JSON row per prediction, {\"task_id\": ..., \"completion\": ...}.",
    )
    parser.add_argument("--task", required=True, choices=sorted(TASKS), help="the task the predictions answer")
    parser.add_argument("--predictions", required=True, type=Path, help="JSONL file of {task_id, completion} rows")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSONL file for the results, written atomically; progress is kept in <out>.partial "
                             "so a re-run resumes (default: print only the summary)")
    parser.add_argument("--data-files", default=None, help="local data file(s) instead of the default source (comma-separated)")
    parser.add_argument("--split", default="test", help="the split the task ids come from (default test; KodCode: train/test/all)")
    parser.add_argument("--sandbox", default="auto", choices=["docker", "process", "auto"], help="where code runs (code tasks; default auto)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per test run (code tasks; default 10)")
    parser.add_argument("--partial-credit", action="store_true", help="reward = fraction of tests passed (code tasks)")
    parser.add_argument("--workers", type=int, default=None, help="validations in parallel (default: CPU count for code, 1 otherwise)")
    return parser


def score_cli(argv: list[str] | None = None, prog: str = "gcop score") -> int:
    """Entry point for ``gcop score``. Exit 0 when every row was graded, 1 when some were not
    (invalid, duplicate or infra rows), 2 on a usage error, 130 when interrupted (re-run to resume)."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        check_number("--timeout", args.timeout, lo=0, lo_open=True)
        if args.workers is not None:
            check_int("--workers", args.workers, lo=1)
    except ValueError as exc:
        parser.error(str(exc))
    if not args.predictions.is_file():
        what = "does not exist" if not args.predictions.exists() else "is not a file"
        return usage_error(prog, f"predictions file {args.predictions} {what}")
    data_files = None
    if args.data_files:
        parts = [p.strip() for p in args.data_files.split(",") if p.strip()]
        data_files = parts[0] if len(parts) == 1 else parts
    if args.out is not None:
        problem = check_out(args.out, [args.predictions, *data_paths(args.task, args.split, data_files)])
        if problem:
            return usage_error(prog, problem)
    try:
        task = TASKS[args.task]()
    except ImportError as exc:
        return usage_error(prog, f"task {args.task} is not available: {exc}")
    try:
        problems = {p.task_id: p for p in task.load(split=args.split, data_files=data_files)}
    except Exception as exc:  # noqa: BLE001 - any loader failure is reported, with the file, as a usage error
        return usage_error(prog, f"cannot load {args.task} ({args.split}): {exc}")

    done: dict[int, dict[str, Any]] = {}
    partial = None
    if args.out is not None:
        fingerprint = resume_fingerprint(args, data_files)
        done, problem = read_partial(partial_path(args.out), fingerprint)
        if problem:
            return usage_error(prog, problem)
        partial = JsonlAppender(partial_path(args.out), default=str)
        if not partial.path.exists() or partial.path.stat().st_size == 0:
            partial.append({RESUME_HEADER: fingerprint})
        if done:
            print(f"resuming: {len(done)} rows already graded in {partial_path(args.out)}", file=sys.stderr)

    predictions = read_predictions(args.predictions)
    validator = task.make_validator(args)
    workers = args.workers or (cpu_count() if task.code else 1)
    with stop_on_signal(what="grading") as stop:
        grading = grade_predictions(predictions, problems, validator, source=args.predictions,
                                    task=args.task, split=args.split, done=done, workers=workers,
                                    on_result=partial.append if partial is not None else None, stop=stop)
    if grading.interrupted:
        where = f"saved in {partial_path(args.out)}; re-run the same command to resume" if args.out else \
            "nothing saved (no --out)"
        print(f"interrupted: {grading.graded} of {grading.todo} rows graded this run, {where}", file=sys.stderr)
        return exit_interrupted()

    ordered = grading.ordered()
    if args.out is not None:
        write_text_atomic(args.out, "".join(json.dumps(row, default=str) + "\n" for row in ordered))
        partial_path(args.out).unlink(missing_ok=True)
    for result in ordered:
        if result["status"] in (INVALID, DUPLICATE):
            print(f"warning: {result['error']}", file=sys.stderr)
    print(json.dumps(summarize(ordered), indent=2))
    bad = sum(r["status"] in (INVALID, DUPLICATE, Status.INFRA.value) for r in ordered)
    return EXIT_OK if bad == 0 else EXIT_FAILED
