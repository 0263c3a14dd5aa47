"""The ``gcop`` command: one entry point, one sub-command per job, each in its own module of this package."""

from __future__ import annotations

import sys

from gcop_env.cli.exit_codes import EXIT_FAILED, EXIT_OK, EXIT_USAGE

USAGE = """usage: gcop <command> [options]

commands:
  demo      run a few GSM8K problems through the env with a local core (offline)
  tasks     list the registered tasks and their env ids
  check     one tiny call per model spec: reachable? model id, sampling accepted, price
  score     grade a JSONL file of core outputs exactly as the env would
  sandbox   build or check the Docker sandbox image
  curate    teacher-guided acceptance sampling of strategies
  sft       supervised fine-tuning of the guide on curated strategies
  grpo      GRPO of the guide on the env's shaped reward
  eval      evaluate one condition (core-only, ICL, guided, strategies) into a run dir
  report    Table 1, Figure 1 and paired tests from `gcop eval` run dirs
  serve     serve a task to another RL framework (serve openenv: an OpenEnv server)
  models    local models (models prepare-guide: Gemma 3 270M as a transformers guide)

Run 'gcop <command> --help' for a command's options."""


def _tasks_parser():
    from gcop_env.cli.args import OneLineErrorParser

    return OneLineErrorParser(prog="gcop tasks", description="List the registered tasks and their env ids.")


def _tasks(argv: list[str]) -> int:
    import gcop_env

    _tasks_parser().parse_args(argv)
    for spec in gcop_env.registered_tasks():
        print(f"{spec.env_id:34s} {spec.description}")
        if spec.multiturn_env_id:
            print(f"{spec.multiturn_env_id:34s} the same task, multi-turn: the guide revises after a failure "
                  f"(max_turns=3; any id takes max_turns=N)")
    return EXIT_OK


def _demo(argv):
    from gcop_env.cli.demo import run_demo
    return run_demo(argv)


def _check(argv):
    from gcop_env.cli.check import check_cli
    return check_cli(argv)


def _score(argv):
    from gcop_env.cli.score import score_cli
    return score_cli(argv)


def _sandbox(argv):
    from gcop_env.cli.sandbox import sandbox_cli
    return sandbox_cli(argv)


def _curate(argv):
    from gcop_env.cli.train import curate_cli
    return curate_cli(argv)


def _sft(argv):
    from gcop_env.cli.train import sft_cli
    return sft_cli(argv)


def _grpo(argv):
    from gcop_env.cli.train import grpo_cli
    return grpo_cli(argv)


def _eval(argv):
    from gcop_env.cli.eval import eval_cli
    return eval_cli(argv)


def _report(argv):
    from gcop_env.cli.report import report_cli
    return report_cli(argv)


def _serve(argv):
    from gcop_env.cli.serve import serve_cli
    return serve_cli(argv)


def _models(argv):
    from gcop_env.cli.models import models_cli
    return models_cli(argv)


# The commands that call cores: they read the rate-limit, price and launcher variables first.
CALLS_CORES = frozenset({"demo", "check", "curate", "grpo", "eval", "serve"})

COMMANDS = {"demo": _demo, "tasks": _tasks, "check": _check, "score": _score, "sandbox": _sandbox,
            "curate": _curate, "sft": _sft, "grpo": _grpo, "eval": _eval, "report": _report,
            "serve": _serve, "models": _models}

# The parser each command parses its arguments with (the docs' CLI reference is generated from these).
PARSERS = {
    "demo": lambda: _module("demo").build_parser(),
    "tasks": _tasks_parser,
    "check": lambda: _module("check").build_parser(),
    "score": lambda: _module("score").build_parser(),
    "sandbox": lambda: _module("sandbox").build_parser(),
    "curate": lambda: _module("train").build_parser("curate"),
    "sft": lambda: _module("train").build_parser("sft"),
    "grpo": lambda: _module("train").build_parser("grpo"),
    "eval": lambda: _module("eval").build_parser(),
    "report": lambda: _module("report").build_parser(),
    "serve": lambda: _module("serve").build_parser(),
    "models": lambda: _module("models").build_parser(),
}


def _module(name: str):
    import importlib

    return importlib.import_module(f"gcop_env.cli.{name}")


def command_parser(name: str):
    """The argument parser of ``gcop NAME`` (an argparse parser whose ``prog`` is ``gcop NAME``)."""
    return PARSERS[name]()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return EXIT_OK
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        import difflib
        close = difflib.get_close_matches(command, list(COMMANDS), n=1)
        print(f"gcop: unknown command {command!r}" + (f"; did you mean {close[0]!r}?" if close else "") + f"\n\n{USAGE}",
              file=sys.stderr)
        return EXIT_USAGE
    from gcop_env.cli.args import one_line_errors
    from gcop_env.cores.base import FatalCoreError

    def run(argv: list[str] | None) -> int:
        if command in CALLS_CORES and not {"-h", "--help"} & set(argv or []):
            from gcop_env.cores import check_environment
            check_environment()  # a malformed GCOP_RPM, GCOP_PRICES, ... is one line before any work
        return int(COMMANDS[command](argv) or 0)

    try:
        return one_line_errors(f"gcop {command}", run)(rest)
    except FatalCoreError as exc:  # a retired model or bad key: one clear line, not a traceback
        print(f"gcop {command}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
