"""``gcop check SPEC...``: one tiny call per model spec: reachable? model id, sampling accepted,
price, lifecycle (:mod:`gcop_env.cores.preflight`). Exit 0 when every spec is ready, 1 otherwise."""

from __future__ import annotations

import json
import sys

from gcop_env.cli.args import OneLineErrorParser
from gcop_env.cli.exit_codes import EXIT_FAILED, EXIT_OK
from gcop_env.cores.base import SamplingParams
from gcop_env.cores.preflight import preflight
from gcop_env.utils.numbers import check_number


def build_parser() -> OneLineErrorParser:
    parser = OneLineErrorParser(prog="gcop check", description=__doc__.split("\n\n")[0])
    parser.add_argument("specs", nargs="+", metavar="SPEC",
                        help="core, judge, teacher or guide spec (anthropic:MODEL, openai:MODEL@URL, hf:PATH; see the "
                             "docs' Cores page)")
    parser.add_argument("--temperature", type=float, default=0.0, help="temperature to test (default: 0)")
    parser.add_argument("--top-p", type=float, default=1.0, help="top-p to test (default: 1)")
    parser.add_argument("--timeout-s", type=float, default=60.0, help="per-request timeout")
    parser.add_argument("--json", action="store_true", help="print the results as JSON lines")
    return parser


def check_cli(argv: list[str] | None = None) -> int:
    """``gcop check SPEC...``: exit 0 when every spec is ready, 1 otherwise."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_number("--temperature", args.temperature, lo=0)
        check_number("--top-p", args.top_p, lo=0, hi=1, lo_open=True)
        check_number("--timeout-s", args.timeout_s, lo=0, lo_open=True)
    except ValueError as exc:
        parser.error(str(exc))
    sampling = SamplingParams(temperature=args.temperature, top_p=args.top_p)
    results = preflight([(spec, sampling) for spec in args.specs], timeout_s=args.timeout_s)
    for r in results:
        if args.json:
            print(json.dumps(r.as_dict(), default=str))
        else:
            print("\n".join(r.lines()))
    bad = [r for r in results if not r.ok]
    if bad and not args.json:
        print(f"{len(bad)} of {len(results)} spec(s) not ready", file=sys.stderr)
    return EXIT_FAILED if bad else EXIT_OK
