"""``gcop eval``: run one condition (core-only, ICL, guided, or pre-written strategies) over a task
split into a run dir (:mod:`gcop_env.evaluation.run`). Exit 0 when done, 2 on bad input, 3 when some
rows hit infrastructure errors, 4 when the budget ran out, 130 when stopped (re-run to resume)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gcop_env.cli.args import OneLineErrorParser, build_parser as config_parser, resolve_config
from gcop_env.cli.budget import budget_message
from gcop_env.cli.exit_codes import EXIT_BUDGET, EXIT_INFRA, EXIT_OK, EXIT_USAGE, exit_interrupted
from gcop_env.cores.base import CoreError
from gcop_env.cores.budget import Budget
from gcop_env.evaluation.config import PRESETS, EvalConfig, EvalInputError
from gcop_env.evaluation.records import RECORDS, SUMMARY
from gcop_env.evaluation.run import run_eval
from gcop_env.utils.interrupt import stop_on_signal

DESCRIPTION = ("Run one condition (core-only, ICL, guided, or pre-written strategies) over a task split; "
               "write DIR/records.jsonl and DIR/summary.json. Re-running the same command resumes.")


def build_parser() -> OneLineErrorParser:
    """The flags of :class:`EvalConfig` (the argument engine), plus the condition (exactly one) and
    ``--no-progress``."""
    parser = config_parser(EvalConfig, "gcop eval", DESCRIPTION)
    which = parser.add_argument_group("condition (exactly one)").add_mutually_exclusive_group(required=True)
    which.add_argument("--core-only", action="store_true", help="the core alone, on its unguided prompt")
    which.add_argument("--icl", type=int, metavar="K", dest="icl_k",
                       help="core-only with the K nearest training (problem, solution) pairs in the prompt")
    which.add_argument("--guide", metavar="SPEC",
                       help="guided generation: hf:PATH[?gguf_file=NAME], openai:MODEL@URL, or vllm:PATH")
    which.add_argument("--strategies", metavar="FILE",
                       help="score pre-written guide outputs: JSONL rows {task_id, guide_output[, sample]}")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def config_from_args(ns: dict[str, Any], parser: argparse.ArgumentParser | None = None) -> EvalConfig:
    """The config of parsed flags: the dataclass defaults, then ``--preset``, then ``--config FILE``,
    then the flags. A value out of its range is a one-line usage error (exit 2); a bad combination
    (a condition without its input, a bad spec) raises :class:`EvalInputError`."""
    ns = dict(ns)
    ns.pop("no_progress", None)
    if "out" not in ns:
        (parser or build_parser()).error("the following arguments are required: --out")
    base: dict[str, Any] = dict(PRESETS[ns["preset"]]) if ns.get("preset") else {}
    if ns.pop("core_only", False):
        ns["kind"] = "core-only"
    elif "icl_k" in ns:
        ns["kind"] = "icl"
    elif "guide" in ns:
        ns["kind"] = "guided"
    elif "strategies" in ns:
        ns["kind"] = "strategies"
    if ns.get("guide_stop") == "":
        ns["guide_stop"] = None
    return resolve_config(EvalConfig, parser or build_parser(), ns, base)


def eval_cli(argv: list[str] | None = None) -> int:
    """``gcop eval``: 0 when done, 2 on bad input, 3 when some rows hit infrastructure errors, 4 when the
    budget (``--max-usd`` / ``--max-total-tokens``) ran out, 130 when stopped."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    ns = vars(parser.parse_args(argv))
    progress = not ns.get("no_progress", False)
    try:
        config = config_from_args(ns, parser)
        try:
            budget = Budget.from_limits(config.max_usd, config.max_total_tokens)
        except ValueError as exc:
            parser.error(str(exc))
        # Ctrl-C / SIGTERM: no new job starts, those in flight finish (each within its request timeout) and
        # are saved, exit 130 (a second one stops at once)
        with stop_on_signal(grace_s=config.timeout_s, what="gcop eval") as stop:
            result = run_eval(config, progress=progress, preflight=config.preflight, stop=stop.is_set,
                              budget=budget)
    except EvalInputError as exc:
        print(f"gcop eval: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CoreError as exc:  # a permanent API error (bad key, unknown model): every call would fail the same way
        print(f"gcop eval: error: {exc} (finished problems are saved in {ns['out']}; fix it and re-run to resume)",
              file=sys.stderr)
        return EXIT_USAGE
    from gcop_env.evaluation.multiturn import turn_lines

    for line in result.lines() + turn_lines(result.metrics):
        print(line)
    if result.interrupted:
        print(f"gcop eval: interrupted after {result.metrics['n_problems']} of {result.n_problems} problems; "
              f"the finished ones are saved in {result.out / RECORDS}: re-run the same command to resume",
              file=sys.stderr)
        return exit_interrupted()
    if result.budget_exhausted:
        saved = (f"{result.metrics['n_problems']} of {result.n_problems} problems are finished and saved in "
                 f"{result.out / RECORDS}; no {SUMMARY} until the run is complete.")
        print(budget_message("gcop eval", argv, budget.status(), saved), file=sys.stderr)
        return EXIT_BUDGET
    n_infra = result.metrics["n_infra"]
    if n_infra:
        print(f"gcop eval: WARNING: {n_infra} record(s) hit infrastructure errors (API or sandbox), left out of "
              f"the accuracy, not counted as wrong; see 'error' in {result.out / RECORDS} and re-run the same "
              f"command to retry them", file=sys.stderr)
        return EXIT_INFRA
    return EXIT_OK
