"""What the shared rate limiter costs and what it buys, against a server that enforces a limit.

    python benchmarks/bench_rate_limits.py [--limit N] [--window-s W] [--windows K] [--threads T]

Prints, measured in one run:

* the limiter's own cost per call (a no-op call through ``EndpointLimiter.call``): no limits set,
  limits set (in-process ledger), and limits in a shared ledger file (``flock``);
* T threads sending K x N requests to a loopback server that allows N requests per sliding
  W-second window (a minute, scaled down) and answers 429 + retry-after beyond it: with the
  limiter at N per W, and with no limit configured (only the 429 back-off): requests the server
  refused, attempts sent, and wall time against the fastest the server allows (N at once, then N
  per window: (K - 1) x W).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fake_llm import FakeLLMServer, SlidingWindowLimit  # noqa: E402

from gcop_env.cores import CoreRequest, Message, RateLimits, RetryPolicy, SamplingParams, make_core  # noqa: E402
from gcop_env.cores.limits import EndpointLimiter, reset_limiters  # noqa: E402

REQUEST = CoreRequest(messages=(Message("user", "hi"),), sampling=SamplingParams(max_tokens=8))


class _Reply:
    input_tokens, output_tokens = 3, 2


def bench_overhead(calls: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cases = {"no limits": RateLimits(),
                 "limits, in-process ledger": RateLimits(rpm=1e9, itpm=1e12, otpm=1e12, max_concurrency=64),
                 "limits, shared ledger file": RateLimits(rpm=1e9, itpm=1e12, otpm=1e12, shared_dir=tmp)}
        for name, limits in cases.items():
            limiter = EndpointLimiter(f"bench:{name}", limits)
            n = calls if not limits.shared_dir else calls // 10
            start = time.perf_counter()
            for _ in range(n):
                limiter.call(lambda request: _Reply(), REQUEST)
            per_call = (time.perf_counter() - start) / n
            print(f"  {name:28s} {per_call * 1e6:8.1f} us per call ({n} calls)")


def bench_server(limit: int, window_s: float, windows: int, threads: int) -> None:
    total = limit * windows
    ideal_s = (windows - 1) * window_s  # N at once, then N per window: the fastest the server allows
    for name, limits in {"limiter at the server's limit": RateLimits(rpm=limit, window_s=window_s),
                         "no limit set (429 back-off only)": None}.items():
        reset_limiters()
        gate = SlidingWindowLimit(limit, window_s)
        with FakeLLMServer(lambda p: "ok") as server:
            server.gate = gate
            core = make_core(f"openai:m@{server.openai_base_url}", cache=False, limits=limits,
                             retry=RetryPolicy(max_attempts=50, initial_backoff_s=0.01, max_backoff_s=0.2))
            core.complete(CoreRequest(messages=(Message("user", "warm-up"),)))  # SDK client start-up, not timed
            time.sleep(window_s + 0.1)  # the warm-up's booking leaves the window
            gate.arrivals.clear()
            gate.admitted = gate.refused = 0
            start = time.perf_counter()
            with ThreadPoolExecutor(threads) as pool:
                texts = list(pool.map(lambda i: core.complete(CoreRequest(messages=(Message("user", f"q{i}"),))).text,
                                      range(total)))
            wall = time.perf_counter() - start
        assert texts == ["ok"] * total
        print(f"  {name:34s} answered {total}, refused (429) {gate.refused:4d}, attempts {gate.admitted + gate.refused:4d}, "
              f"wall {wall:6.2f} s = {wall / ideal_s:.2f}x the fastest the server allows ({ideal_s:.2f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=60, help="requests the server allows per window")
    parser.add_argument("--window-s", type=float, default=2.0, help="the server's window (a minute, scaled down)")
    parser.add_argument("--windows", type=int, default=4, help="requests sent: this many windows' worth")
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--calls", type=int, default=20000, help="no-op calls for the overhead figure")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # one retry warning per 429 would bury the figures
    print("limiter cost per call:")
    bench_overhead(args.calls)
    print(f"{args.threads} threads against a server allowing {args.limit} requests per {args.window_s:g} s:")
    bench_server(args.limit, args.window_s, args.windows, args.threads)


if __name__ == "__main__":
    main()
