"""``gcop report RUN_DIR... --out DIR``: Table 1, Figure 1 and report.json from `gcop eval` run dirs
(:mod:`gcop_env.evaluation.report`)."""

from __future__ import annotations

import sys
from pathlib import Path

from gcop_env.cli.args import OneLineErrorParser
from gcop_env.cli.exit_codes import EXIT_OK, EXIT_USAGE
from gcop_env.evaluation.report import ReportError, write_report


def build_parser() -> OneLineErrorParser:
    parser = OneLineErrorParser(prog="gcop report", description=(
        "Table 1 (table.md), Figure 1 (reward_cost.png) and report.json from `gcop eval` run dirs, with a paired "
        "McNemar test of every condition against the core-only run of the same core and task."))
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run dirs written by `gcop eval --out`")
    parser.add_argument("--out", required=True, type=Path,
                        help="directory for table.md, reward_cost.png, report.json (and turns.png for multi-turn runs)")
    parser.add_argument("--task", default=None, help="refuse run dirs of any other task")
    return parser


def report_cli(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        report = write_report(args.run_dirs, args.out, task=args.task)
    except ReportError as exc:
        print(f"gcop report: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(report.table_path.read_text(encoding="utf-8"))
    print(f"table:  {report.table_path}\nfigure: {report.plot_path}\njson:   {report.json_path}")
    if report.turns_path is not None:
        print(f"turns:  {report.turns_path}")
    return EXIT_OK
